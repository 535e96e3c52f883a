// The bytes of backup objects. They are replication stream records
// (docs/protocol.md), so the bucket holds exactly what a replica would be
// sent, with the same CRCs and checks:
//   - a segment object is one WAL_SEGMENT record: transaction files with
//     lz4 bodies, back to back, chained by their checksums;
//   - a snapshot object is the run of SNAPSHOT records of one image.
// Decoding names the object key in every error (BackupObjectError).
import { RecordType, SnapshotAssembler, StreamError, decodeSnapshotChunk, decodeWalSegmentFiles, walSegmentRecord, walSegmentRecordOfRun, type StreamRecord } from '../replication/records.js';
import { RecordReader } from '../replication/record-reader.js';
import { streamSnapshotRecords, type SnapshotImage } from '../replication/snapshot.js';
import {
  decodeTransaction, decodeTransactionHeader, encodeTransaction, isCompressedFile, segmentFileOf, splitTransactionFiles, transactionFileName, TxFileError,
  type SegmentFile, type TransactionFile,
} from '../txlog/txfile.js';
import type { ParsedObjectName } from './layout.js';
import type { PageChecksums } from '../txlog/checksum.js';

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
    if (isCompressedFile(f.bytes)) return f;
    const tx = decodeTransaction(f.bytes);
    return { ...f, bytes: encodeTransaction(tx, { compress: true }) };
  });
}

/** A segment object: one WAL_SEGMENT record of the files (`timestamp` is the record's; fixed by golden vectors). */
export function encodeSegmentObject(db: string, files: SegmentFile[], timestamp = Date.now()): Buffer {
  return walSegmentRecord(db, compressedFiles(files), timestamp);
}

/**
 * encodeSegmentObject of transaction files as one read of the log gives
 * them, back to back in `run`: when all are compressed already (the log's
 * default), the run is the record's payload as it is.
 */
export function encodeLogSegmentObject(db: string, run: Buffer, entries: readonly { length: number }[]): Buffer {
  let offset = 0;
  for (const e of entries) {
    if (!isCompressedFile(run.subarray(offset, offset + e.length))) return encodeSegmentObject(db, splitTransactionFiles(run, entries));
    offset += e.length;
  }
  return walSegmentRecordOfRun(db, run, entries);
}

/** The snapshot object of an image, as its SNAPSHOT records (lz4), read as it is encoded. */
export async function encodeSnapshotObject(db: string, image: Omit<SnapshotImage, 'via'>): Promise<Buffer> {
  const records: Buffer[] = [];
  for await (const record of streamSnapshotRecords(db, image, true)) records.push(record);
  return Buffer.concat(records);
}

export interface DecodedTransaction {
  tx: TransactionFile;
  bytes: Buffer;
}

/** Checks a segment object's one WAL_SEGMENT record (CRC, database, TXIDs of the key) and hands it to `use`; errors name the object. */
function withSegmentRecord<T>(label: string, db: string, name: ParsedObjectName, bytes: Buffer, use: (r: StreamRecord, fail: (what: string) => never) => T): T {
  const fail = (what: string): never => {
    throw new BackupObjectError(`${label}: ${what}`);
  };
  try {
    const reader = new RecordReader();
    reader.push(bytes);
    const record = reader.next();
    if (!record) return reader.end() as never; // throws: truncated
    if (reader.pending > 0) fail(`${reader.pending} bytes after the segment record`);
    if (record.type !== RecordType.WalSegment) fail(`holds a record of type ${record.type}, not a WAL_SEGMENT`);
    if (record.name !== db) fail(`holds database "${record.name}", not "${db}"`);
    if (record.minTxid !== name.minTxid || record.maxTxid !== name.maxTxid) {
      fail(`holds TXIDs ${record.minTxid}..${record.maxTxid}, its name says ${name.minTxid}..${name.maxTxid}`);
    }
    return use(record, fail);
  } catch (err) {
    if (err instanceof StreamError || err instanceof TxFileError) fail(err.message);
    throw err;
  }
}

/** Verifies and decodes a segment object: every transaction file whole (CRC, lz4 body, pages) and their chain. */
export function decodeSegmentObject(label: string, db: string, name: ParsedObjectName, bytes: Buffer): DecodedTransaction[] {
  return withSegmentRecord(label, db, name, bytes, (r) => decodeWalSegmentFiles(r));
}

/**
 * A segment object's transaction files as stored, checked by the record's
 * CRC and their headers' chain without decompressing them: what compaction
 * needs to merge objects byte for byte (restore decodes them whole).
 */
export function segmentObjectFiles(label: string, db: string, name: ParsedObjectName, bytes: Buffer): SegmentFile[] {
  return withSegmentRecord(label, db, name, bytes, (r, fail) => {
    const files: SegmentFile[] = [];
    for (let offset = 0; offset < r.payload.length;) {
      const h = decodeTransactionHeader(r.payload.subarray(offset), `at payload offset ${offset}`);
      if (offset + h.fileSize > r.payload.length) fail(`${txName(h)} is cut short at payload offset ${offset}`);
      const f = segmentFileOf(r.payload.subarray(offset, offset + h.fileSize), h);
      const prev = files[files.length - 1];
      if (prev && (f.minTxid !== prev.maxTxid + 1 || f.preApplyChecksum !== prev.postApplyChecksum)) fail(`${txName(f)} does not follow ${txName(prev)}`);
      files.push(f);
      offset += h.fileSize;
    }
    const first = files[0];
    const last = files[files.length - 1];
    if (!first || !last || first.minTxid !== r.minTxid || first.preApplyChecksum !== r.preApplyChecksum || last.maxTxid !== r.maxTxid || last.postApplyChecksum !== r.postApplyChecksum) {
      fail('its transaction files disagree with the record header');
    }
    return files;
  });
}

/** Where a snapshot object's pages go, chunk by chunk, as they are verified. */
export type PageSink = (firstPgno: number, pages: Buffer, first: StreamRecord) => void | Promise<void>;

/**
 * Reads a snapshot object pushed in pieces (a download in flight): checks
 * every record's CRC and the chunks' order, hands each chunk's pages to the
 * sink in order, and at the end checks that the pages' checksum is the
 * snapshot's. lz4 chunks decompress into memory from `memory` when given
 * (the sink gives it back once written), else into new buffers.
 */
export class SnapshotObjectReader {
  private scratch = Buffer.alloc(0);
  // A record's compressed bytes are dead once decodeSnapshotChunk() has run: one buffer serves them all.
  private readonly reader = new RecordReader({
    compressedSnapshotScratch: (size) => {
      if (this.scratch.length < size) this.scratch = Buffer.allocUnsafeSlow(size);
      return this.scratch.subarray(0, size);
    },
  });
  private assembler?: SnapshotAssembler;
  private first?: StreamRecord;

  constructor(
    private readonly label: string,
    private readonly db: string,
    private readonly name: ParsedObjectName,
    private readonly sink: PageSink,
    private readonly memory?: (size: number) => Buffer,
  ) {}

  private fail(what: string): never {
    throw new BackupObjectError(`${this.label}: ${what}`);
  }

  /** The snapshot's header fields, once the first chunk is in. */
  get header(): StreamRecord | undefined {
    return this.first;
  }

  async push(chunk: Buffer): Promise<void> {
    await this.named(async () => {
      this.reader.push(chunk);
      for (let r = this.reader.next(); r; r = this.reader.next()) {
        if (r.type !== RecordType.Snapshot) this.fail(`holds a record of type ${r.type}, not a SNAPSHOT`);
        if (!this.first) {
          if (r.name !== this.db) this.fail(`holds database "${r.name}", not "${this.db}"`);
          if (r.maxTxid !== this.name.maxTxid) this.fail(`is a snapshot at TXID ${r.maxTxid}, its name says ${this.name.maxTxid}`);
          this.first = r;
        }
        const pages = decodeSnapshotChunk(r, this.memory);
        this.assembler ??= new SnapshotAssembler(r);
        this.assembler.add(r, pages);
        await this.sink(r.firstPgno, pages, this.first);
      }
    });
  }

  /**
   * After the last byte: the object must have ended on its LAST chunk with the right checksum.
   * Returns the snapshot's header fields and the checksum of each of its pages.
   */
  async finish(): Promise<{ first: StreamRecord; checksums: PageChecksums }> {
    return this.named(async () => {
      this.reader.end();
      if (!this.assembler) this.fail('is empty');
      this.assembler.finish(); // throws if the object ended before its LAST chunk or the checksum differs
      return { first: this.first!, checksums: this.assembler.checksums };
    });
  }

  /** Stream errors become errors naming the object. */
  private async named<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StreamError) this.fail(err.message);
      throw err;
    }
  }
}

/** For messages: `00..01-00..05.ltx` style name of a transaction. */
export const txName = (tx: { minTxid: number; maxTxid: number }): string => transactionFileName(tx.minTxid, tx.maxTxid);

