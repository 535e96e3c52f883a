// The bytes of backup objects. They are replication stream records
// (docs/protocol.md), so the bucket holds exactly what a replica would be
// sent, with the same CRCs and checks:
//   - a segment object is one WAL_SEGMENT record: transaction files with
//     lz4 bodies, back to back, chained by their checksums;
//   - a snapshot object is the run of SNAPSHOT records of one image.
// Decoding names the object key in every error (BackupObjectError).
import { RecordReader, RecordType, SnapshotAssembler, StreamError, decodeSnapshotChunk, decodeWalSegmentFiles, walSegmentRecord, type StreamRecord } from '../replication/records.js';
import { snapshotRecords, type SnapshotImage } from '../replication/snapshot.js';
import { decodeTransaction, encodeTransaction, transactionFileName, TX_FLAG_LZ4, TxFileError, type SegmentFile, type TransactionFile } from '../txlog/txfile.js';
import type { ParsedObjectName } from './layout.js';

/** An object in the bucket is corrupt, truncated or not what its key says; the message names it. */
export class BackupObjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupObjectError';
  }
}

/** Segment files with lz4 bodies: a log kept uncompressed (data.compress: false) is compressed for the bucket. */
export function compressedFiles(files: SegmentFile[]): SegmentFile[] {
  return files.map((f) => {
    if ((f.bytes.readUInt16BE(6) & TX_FLAG_LZ4) !== 0) return f;
    const tx = decodeTransaction(f.bytes);
    return { ...f, bytes: encodeTransaction(tx, { compress: true }) };
  });
}

/** A segment object: one WAL_SEGMENT record of the files (`timestamp` is the record's; fixed by golden vectors). */
export function encodeSegmentObject(db: string, files: SegmentFile[], timestamp = Date.now()): Buffer {
  return walSegmentRecord(db, compressedFiles(files), timestamp);
}

/** The snapshot object of an image, as its SNAPSHOT records (lz4). */
export function encodeSnapshotObject(db: string, image: SnapshotImage): Buffer {
  return Buffer.concat([...snapshotRecords(db, image, true)]);
}

export interface DecodedTransaction {
  tx: TransactionFile;
  bytes: Buffer;
}

/** Verifies and decodes a segment object: one WAL_SEGMENT record for `db` whose TXIDs are the key's. */
export function decodeSegmentObject(label: string, db: string, name: ParsedObjectName, bytes: Buffer): DecodedTransaction[] {
  const fail = (what: string): never => {
    throw new BackupObjectError(`${label}: ${what}`);
  };
  let record: StreamRecord | undefined;
  try {
    const reader = new RecordReader();
    reader.push(bytes);
    record = reader.next();
    if (!record) reader.end(); // throws: truncated
    if (reader.pending > 0) fail(`${reader.pending} bytes after the segment record`);
    if (record!.type !== RecordType.WalSegment) fail(`holds a record of type ${record!.type}, not a WAL_SEGMENT`);
    if (record!.name !== db) fail(`holds database "${record!.name}", not "${db}"`);
    if (record!.minTxid !== name.minTxid || record!.maxTxid !== name.maxTxid) {
      fail(`holds TXIDs ${record!.minTxid}..${record!.maxTxid}, its name says ${name.minTxid}..${name.maxTxid}`);
    }
    return decodeWalSegmentFiles(record!);
  } catch (err) {
    if (err instanceof StreamError || err instanceof TxFileError) fail(err.message);
    throw err;
  }
}

/** Where a snapshot object's pages go, chunk by chunk, as they are verified. */
export type PageSink = (firstPgno: number, pages: Buffer, first: StreamRecord) => void | Promise<void>;

/**
 * Reads a snapshot object pushed in pieces (a download in flight): checks
 * every record's CRC and the chunks' order, hands each chunk's pages to the
 * sink, and at the end checks that the pages' checksum is the snapshot's.
 */
export class SnapshotObjectReader {
  private readonly reader = new RecordReader();
  private assembler?: SnapshotAssembler;
  private first?: StreamRecord;

  constructor(
    private readonly label: string,
    private readonly db: string,
    private readonly name: ParsedObjectName,
    private readonly sink: PageSink,
  ) {}

  private fail(what: string): never {
    throw new BackupObjectError(`${this.label}: ${what}`);
  }

  /** The snapshot's header fields, once the first chunk is in. */
  get header(): StreamRecord | undefined {
    return this.first;
  }

  async push(chunk: Buffer): Promise<void> {
    try {
      this.reader.push(chunk);
      for (let r = this.reader.next(); r; r = this.reader.next()) {
        if (r.type !== RecordType.Snapshot) this.fail(`holds a record of type ${r.type}, not a SNAPSHOT`);
        if (!this.assembler) {
          if (r.name !== this.db) this.fail(`holds database "${r.name}", not "${this.db}"`);
          if (r.maxTxid !== this.name.maxTxid) this.fail(`is a snapshot at TXID ${r.maxTxid}, its name says ${this.name.maxTxid}`);
          this.assembler = new SnapshotAssembler(r);
          this.first = r;
        }
        const pages = decodeSnapshotChunk(r);
        this.assembler.add(r, pages);
        await this.sink(r.firstPgno, pages, this.first!);
      }
    } catch (err) {
      if (err instanceof StreamError) this.fail(err.message);
      throw err;
    }
  }

  /** After the last byte: the object must have ended on its LAST chunk with the right checksum. */
  finish(): StreamRecord {
    try {
      this.reader.end();
      if (!this.assembler) this.fail('is empty');
      if (this.reader.pending > 0 || !this.assembler.done) this.assembler.finish(); // throws: ended early
      this.assembler.finish();
      return this.first!;
    } catch (err) {
      if (err instanceof StreamError) this.fail(err.message);
      throw err;
    }
  }
}

/** For messages: `00..01-00..05.ltx` style name of a transaction. */
export const txName = (tx: { minTxid: number; maxTxid: number }): string => transactionFileName(tx.minTxid, tx.maxTxid);

