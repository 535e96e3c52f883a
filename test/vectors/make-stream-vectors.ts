// Builds the replication stream's golden vectors (docs/protocol.md, "Golden
// vectors") from fixed content: fixed timestamps, fixed page bytes. The test
// test/unit/records.test.ts rebuilds them and compares; to rewrite the files
// after a deliberate format change:
//
//   npx tsc -p . && node dist/test/vectors/make-stream-vectors.js

import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { decodeSnapshotChunk, decodeWalSegment, dropRecord, encodeRecord, heartbeatRecord, readyRecord, recordTypeName, RecordType, snapshotChunkRecord, walSegmentRecord, type StreamRecord } from '../../src/replication/records.js';
import { RecordReader } from '../../src/replication/record-reader.js';
import { decodeHello, helloRecord } from '../../src/replication/hello.js';
import { formatHex64 as hex, PageChecksums, pageChecksum } from '../../src/txlog/checksum.js';
import { encodeTransaction, type TransactionFile } from '../../src/txlog/txfile.js';

export const VECTORS_DIR = fileURLToPath(new URL('../../../test/vectors/', import.meta.url));

export const PAGE_SIZE = 512;
export const DB = 'app.db';
const T0 = 1_700_000_100_000; // every record's timestamp is T0 plus a small step
const NODE_ID = 0x0123456789abcdefn;

/** Byte i of a vector page with seed n: the same formula as the transaction file vectors (docs/format.md). */
export function vectorPage(n: number): Buffer {
  const page = Buffer.alloc(PAGE_SIZE);
  for (let i = 0; i < PAGE_SIZE; i++) page[i] = (n * 37 + i * 11 + (i >> 8)) & 0xff;
  return page;
}

/** The database the vectors describe: 5 pages (seed = page number) at TXID 5, then TXIDs 6 and 7. */
export function vectorDatabase(): { snapshotAt: { maxTxid: number; postApplyChecksum: bigint; pageSize: number; commitSize: number }; pages: Buffer; txs: TransactionFile[] } {
  const state = new PageChecksums(PAGE_SIZE);
  const pages = Buffer.concat([1, 2, 3, 4, 5].map(vectorPage));
  for (let pgno = 1; pgno <= 5; pgno++) state.set(pgno, vectorPage(pgno));
  const snapshotAt = { maxTxid: 5, postApplyChecksum: state.checksum, pageSize: PAGE_SIZE, commitSize: 5 };
  const tx = (txid: number, commitSize: number, changes: [number, number][]): TransactionFile => {
    const pre = state.checksum;
    for (const [pgno, seed] of changes) state.set(pgno, vectorPage(seed));
    return {
      pageSize: PAGE_SIZE, commitSize, minTxid: txid, maxTxid: txid, timestamp: T0 - 1000 + txid, preApplyChecksum: pre,
      postApplyChecksum: state.checksum, nodeId: NODE_ID, walSalt1: 0, walSalt2: 0, walFrameEnd: 0,
      pages: changes.map(([pgno, seed]) => ({ pgno, data: vectorPage(seed) })),
    };
  };
  // TXID 6 rewrites page 2; TXID 7 grows the database to 6 pages.
  const txs = [tx(6, 5, [[2, 9]]), tx(7, 6, [[6, 6]])];
  return { snapshotAt, pages, txs };
}

export const HELLO_INFO = {
  version: 1, hostname: 'node1', advertiseUrl: 'http://node1:20202', nodeId: '0123456789abcdef', clusterId: 'cluster-a', heartbeatMs: 1000,
};

/** Two SNAPSHOT chunks of the 5-page database: pages 1..3, then 4..5 (LAST). */
function snapshotRecords(compress: boolean, t: number): Buffer[] {
  const { snapshotAt, pages } = vectorDatabase();
  return [
    snapshotChunkRecord(DB, snapshotAt, 1, pages.subarray(0, 3 * PAGE_SIZE), false, compress, t),
    snapshotChunkRecord(DB, snapshotAt, 4, pages.subarray(3 * PAGE_SIZE), true, compress, t + 1),
  ];
}

function walSegment(t: number): Buffer {
  const files = vectorDatabase().txs.map((tx) => ({ ...tx, bytes: encodeTransaction(tx, { compress: false }) }));
  return walSegmentRecord(DB, files, t);
}

export interface StreamVector {
  name: string;
  records: Buffer[];
  /** False when the bytes depend on the lz4 library's output (then only decoding is checked against the file). */
  reproducible: boolean;
}

export function buildStreamVectors(): StreamVector[] {
  const handoff = () => encodeRecord({ type: RecordType.Handoff, timestamp: T0 + 7, payload: Buffer.from('{"leaseId":"lease-0001"}') });
  return [
    { name: 'stream-hello', records: [helloRecord(HELLO_INFO, T0)], reproducible: true },
    { name: 'stream-heartbeat', records: [heartbeatRecord(T0 + 5)], reproducible: true },
    { name: 'stream-ready', records: [readyRecord(T0 + 4)], reproducible: true },
    { name: 'stream-drop', records: [dropRecord('old.db', T0 + 6)], reproducible: true },
    { name: 'stream-handoff', records: [handoff()], reproducible: true },
    { name: 'stream-wal-segment', records: [walSegment(T0 + 3)], reproducible: true },
    { name: 'stream-snapshot-512', records: snapshotRecords(false, T0 + 1), reproducible: true },
    { name: 'stream-snapshot-512-lz4', records: snapshotRecords(true, T0 + 1), reproducible: false },
    {
      // A whole session: HELLO, a snapshot to TXID 5, TXIDs 6..7, READY, HEARTBEAT, DROP, HANDOFF.
      name: 'stream-session',
      records: [helloRecord(HELLO_INFO, T0), ...snapshotRecords(false, T0 + 1), walSegment(T0 + 3), readyRecord(T0 + 4),
        heartbeatRecord(T0 + 5), dropRecord('old.db', T0 + 6), handoff()],
      reproducible: true,
    },
  ];
}

/** A record's fields as JSON: checksums as 16 hex digits, payload as hex, plus its payload decoded. */
export function describeRecord(r: StreamRecord, bytes: Buffer): Record<string, unknown> {
  return {
    type: recordTypeName(r.type), flags: r.flags, name: r.name, pageSize: r.pageSize, commitSize: r.commitSize,
    minTxid: r.minTxid, maxTxid: r.maxTxid, preApplyChecksum: hex(r.preApplyChecksum), postApplyChecksum: hex(r.postApplyChecksum),
    timestamp: r.timestamp, firstPgno: r.firstPgno, pageCount: r.pageCount, payloadLength: r.payload.length,
    recordLength: bytes.length, recordChecksum: hex(bytes.readBigUInt64BE(72)), payload: r.payload.toString('hex'), decoded: decodePayload(r),
  };
}

function decodePayload(r: StreamRecord): unknown {
  const pageList = (pages: { pgno: number; data: Buffer }[]) => pages.map((p) => ({ pgno: p.pgno, checksum: hex(pageChecksum(p.pgno, p.data)) }));
  switch (r.type) {
    case RecordType.Hello: return decodeHello(r);
    case RecordType.Handoff: return JSON.parse(r.payload.toString('utf8')) as unknown;
    case RecordType.WalSegment:
      return decodeWalSegment(r).map((tx) => ({
        minTxid: tx.minTxid, maxTxid: tx.maxTxid, commitSize: tx.commitSize, preApplyChecksum: hex(tx.preApplyChecksum),
        postApplyChecksum: hex(tx.postApplyChecksum), pages: pageList(tx.pages),
      }));
    case RecordType.Snapshot: {
      const raw = decodeSnapshotChunk(r);
      const pages = Array.from({ length: r.pageCount }, (_, i) => ({ pgno: r.firstPgno + i, data: raw.subarray(i * r.pageSize, (i + 1) * r.pageSize) }));
      return { pages: pageList(pages) };
    }
    default: return null;
  }
}

/** Decodes a vector file's bytes into its JSON description. */
export function describeVector(file: string, bytes: Buffer): Record<string, unknown> {
  const reader = new RecordReader();
  reader.push(bytes);
  const records: Record<string, unknown>[] = [];
  let offset = 0;
  for (let r = reader.next(); r; r = reader.next()) {
    const length = 80 + Buffer.byteLength(r.name) + r.payload.length;
    records.push(describeRecord(r, bytes.subarray(offset, offset + length)));
    offset += length;
  }
  reader.end();
  return { file, size: bytes.length, records };
}

function writeVectors(): void {
  for (const v of buildStreamVectors()) {
    const bytes = Buffer.concat(v.records);
    writeFileSync(`${VECTORS_DIR}${v.name}.bin`, bytes);
    writeFileSync(`${VECTORS_DIR}${v.name}.json`, JSON.stringify(describeVector(`${v.name}.bin`, bytes), null, 2) + '\n');
    console.log(`${v.name}.bin: ${bytes.length} bytes, ${v.records.length} record(s)`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) writeVectors();
