// Golden vectors of the backup's bucket format (docs/backup.md):
//   - test/vectors/backup-keys.json: the keys layout.ts gives for example
//     inputs, and what parseObjectName makes of valid and invalid names;
//   - test/vectors/backup-segment.bin (+ .json): a segment object of the
//     transaction file vectors snapshot-512.ltx (TXIDs 1..5) and tx-512.ltx
//     (TXID 6), with its record's header fields.
// A change to either is a change of the format every existing bucket is in.
//
// UPDATE_VECTORS=1 rewrites both from layout.ts and objects.ts; review the
// diff by hand, since the test then compares the code with itself.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { BackupLayout, generationTime, isGenerationId, newGenerationId, parseObjectName, type ParsedObjectName } from '../../src/backup/layout.js';
import { decodeSegmentObject, encodeSegmentObject } from '../../src/backup/objects.js';
import { recordTypeName } from '../../src/replication/records.js';
import { RecordReader } from '../../src/replication/record-reader.js';
import { formatHex64 as hex } from '../../src/txlog/checksum.js';
import { decodeTransaction, decodeTransactionHeader, splitTransactionFiles, type SegmentFile } from '../../src/txlog/txfile.js';
import { describeVector } from '../vectors/make-stream-vectors.js';

const VECTORS_DIR = fileURLToPath(new URL('../../../test/vectors/', import.meta.url));
const KEYS_FILE = `${VECTORS_DIR}backup-keys.json`;
const SEGMENT_FILE = 'backup-segment.bin';

const DB = 'app.db';
const GENERATION = '018f0c3b2a1d4e5f';
const MAX_TXID = Number.MAX_SAFE_INTEGER; // 2^53 - 1: the largest TXID a key may name
const TXIDS = [1, 255, MAX_TXID];
const SEGMENTS: [number, number][] = [[1, 1], [1, 255], [255, MAX_TXID], [MAX_TXID, MAX_TXID]];

/** Names for parseObjectName, each with why it parses or not. */
const NAMES: [string, string][] = [
  ['0000000000000001.snapshot.lz4', 'snapshot at TXID 1'],
  ['00000000000000ff.snapshot.lz4', 'snapshot at TXID 255'],
  ['001fffffffffffff.snapshot.lz4', 'snapshot at TXID 2^53-1'],
  [`backups/app.db/generations/${GENERATION}/snapshots/00000000000000ff.snapshot.lz4`, 'a whole key: only the last component counts'],
  ['0000000000000001-0000000000000001.seg.lz4', 'segment of TXID 1'],
  ['0000000000000001-00000000000000ff.seg.lz4', 'segment of TXIDs 1..255'],
  ['00000000000000ff-001fffffffffffff.seg.lz4', 'segment up to 2^53-1'],
  [`a/b/app.db/generations/${GENERATION}/segments/0000000000000100-00000000000001ff.seg.lz4`, 'a whole key'],
  ['000000000000001.snapshot.lz4', 'invalid: 15 digits'],
  ['00000000000000001.snapshot.lz4', 'invalid: 17 digits'],
  ['000000000000001-0000000000000001.seg.lz4', 'invalid: 15 digits in min TXID'],
  ['0000000000000001-00000000000000001.seg.lz4', 'invalid: 17 digits in max TXID'],
  ['00000000000000FF.snapshot.lz4', 'invalid: upper-case hex'],
  ['00000000000000Ff-0000000000000100.seg.lz4', 'invalid: upper-case hex'],
  ['0000000000000002-0000000000000001.seg.lz4', 'invalid: min TXID > max TXID'],
  ['0000000000000000.snapshot.lz4', 'invalid: TXID 0'],
  ['0000000000000000-0000000000000001.seg.lz4', 'invalid: min TXID 0'],
  ['0020000000000000.snapshot.lz4', 'invalid: 2^53 is past the safe integers'],
  ['ffffffffffffffff-ffffffffffffffff.seg.lz4', 'invalid: past the safe integers'],
  ['0000000000000001.snapshot.lz4.tmp', 'invalid: other suffix'],
  ['0000000000000001-0000000000000001.seg.gz', 'invalid: other suffix'],
  ['0000000000000001-0000000000000001.ltx', 'invalid: a transaction file name'],
  ['0000000000000001.seg.lz4', 'invalid: one TXID with the segment suffix'],
  ['0000000000000001-0000000000000002.snapshot.lz4', 'invalid: two TXIDs with the snapshot suffix'],
  ['backups/app.db/generations/', 'invalid: a prefix'],
];
const GENERATION_IDS = [GENERATION, '018F0C3B2A1D4E5F', '018f0c3b2a1d4e5', '018f0c3b2a1d4e5f0'];

interface KeysJson {
  db: string;
  generation: string;
  txids: number[];
  segments: [number, number][];
  layouts: {
    root: string; databasesPrefix: string; generationsPrefix: string; generationPrefix: string;
    snapshotKeys: string[]; segmentKeys: string[];
  }[];
  generations: { id: string; valid: boolean; startedAt?: number }[];
  /** `result` null: not a backup object name. */
  names: { name: string; why: string; result: ParsedObjectName | null }[];
}

/** What layout.ts makes of the inputs (the JSON's inputs when checking, the constants above when rewriting). */
function describeKeys(input: Pick<KeysJson, 'db' | 'generation' | 'txids' | 'segments'>, roots: string[], names: [string, string][], ids: string[]): KeysJson {
  const { db, generation } = input;
  return {
    ...input,
    layouts: roots.map((root) => {
      const layout = new BackupLayout(root);
      return {
        root, databasesPrefix: layout.databasesPrefix, generationsPrefix: layout.generationsPrefix(db), generationPrefix: layout.generationPrefix(db, generation),
        snapshotKeys: input.txids.map((txid) => layout.snapshotKey(db, generation, txid)),
        segmentKeys: input.segments.map(([min, max]) => layout.segmentKey(db, generation, min, max)),
      };
    }),
    generations: ids.map((id) => (isGenerationId(id) ? { id, valid: true, startedAt: generationTime(id) } : { id, valid: false })),
    names: names.map(([name, why]) => ({ name, why, result: parseObjectName(name) ?? null })),
  };
}

/** The segment vector's record timestamp (set, so the bytes are reproducible). */
const SEGMENT_TIMESTAMP = 1_700_000_002_000;

/** A transaction file's bytes with the fields a WAL_SEGMENT header needs. */
const segmentFileOf = (bytes: Buffer): SegmentFile => splitTransactionFiles(bytes, [bytes])[0]!;
const sourceFiles = (): SegmentFile[] => ['snapshot-512.ltx', 'tx-512.ltx'].map((f) => segmentFileOf(readFileSync(`${VECTORS_DIR}${f}`)));

if (process.env.UPDATE_VECTORS === '1') {
  const keys = describeKeys({ db: DB, generation: GENERATION, txids: TXIDS, segments: SEGMENTS }, ['', 'a/b'], NAMES, GENERATION_IDS);
  writeFileSync(KEYS_FILE, JSON.stringify(keys, null, 2) + '\n');
  const bytes = encodeSegmentObject(DB, sourceFiles(), SEGMENT_TIMESTAMP);
  writeFileSync(`${VECTORS_DIR}${SEGMENT_FILE}`, bytes);
  const json = { sources: ['snapshot-512.ltx', 'tx-512.ltx'], ...describeVector(SEGMENT_FILE, bytes) };
  writeFileSync(`${VECTORS_DIR}backup-segment.json`, JSON.stringify(json, null, 2) + '\n');
}

describe('backup layout vectors', () => {
  const json = JSON.parse(readFileSync(KEYS_FILE, 'utf8')) as KeysJson;

  test('keys and prefixes for each root', () => {
    const actual = describeKeys(json, json.layouts.map((l) => l.root), json.names.map((n) => [n.name, n.why]), json.generations.map((g) => g.id));
    assert.deepEqual(actual.layouts, json.layouts);
    // Every key it makes parses back to what it was made from.
    for (const l of json.layouts) {
      json.txids.forEach((txid, i) => assert.deepEqual(parseObjectName(l.snapshotKeys[i]!), { kind: 'snapshot', minTxid: 1, maxTxid: txid }));
      json.segments.forEach(([minTxid, maxTxid], i) => assert.deepEqual(parseObjectName(l.segmentKeys[i]!), { kind: 'segment', minTxid, maxTxid }));
    }
  });

  test('parseObjectName of valid and invalid names', () => {
    for (const n of json.names) assert.deepEqual(parseObjectName(n.name) ?? null, n.result, `${n.name} (${n.why})`);
    assert.ok(json.names.some((n) => n.result === null) && json.names.some((n) => n.result !== null));
  });

  test('generation ids and their start time', () => {
    for (const g of json.generations) {
      assert.equal(isGenerationId(g.id), g.valid, g.id);
      if (g.valid) {
        assert.equal(generationTime(g.id), g.startedAt);
        assert.equal(newGenerationId(g.startedAt).slice(0, 12), g.id.slice(0, 12), 'a new id starts with its time');
      }
    }
  });
});

describe('backup segment vector', () => {
  const bytes = readFileSync(`${VECTORS_DIR}${SEGMENT_FILE}`);
  const json = JSON.parse(readFileSync(`${VECTORS_DIR}backup-segment.json`, 'utf8')) as ReturnType<typeof describeVector> & { records: Record<string, unknown>[] };
  const header = json.records[0]!;
  const name = { kind: 'segment', minTxid: 1, maxTxid: 6 } as const;

  test('one WAL_SEGMENT record with the header the JSON gives', () => {
    assert.equal(json.records.length, 1);
    const reader = new RecordReader();
    reader.push(bytes);
    const r = reader.next()!;
    assert.equal(reader.next(), undefined);
    reader.end();
    assert.deepEqual(
      { type: recordTypeName(r.type), flags: r.flags, name: r.name, pageSize: r.pageSize, commitSize: r.commitSize, minTxid: r.minTxid, maxTxid: r.maxTxid,
        preApplyChecksum: hex(r.preApplyChecksum), postApplyChecksum: hex(r.postApplyChecksum), timestamp: r.timestamp, payloadLength: r.payload.length, recordLength: bytes.length },
      { type: header.type, flags: header.flags, name: header.name, pageSize: header.pageSize, commitSize: header.commitSize, minTxid: header.minTxid, maxTxid: header.maxTxid,
        preApplyChecksum: header.preApplyChecksum, postApplyChecksum: header.postApplyChecksum, timestamp: header.timestamp, payloadLength: header.payloadLength, recordLength: header.recordLength },
    );
    assert.deepEqual(describeVector(SEGMENT_FILE, bytes), { file: json.file, size: json.size, records: json.records }, 'payload, record checksum and decoded transactions');
  });

  test('decodes to the source transactions, lz4-compressed', () => {
    const files = decodeSegmentObject(SEGMENT_FILE, DB, name, bytes);
    assert.deepEqual(files.map((f) => [f.tx.minTxid, f.tx.maxTxid]), [[1, 5], [6, 6]]);
    sourceFiles().forEach((source, i) => assert.deepEqual(files[i]!.tx, decodeTransaction(source.bytes)));
    for (const f of files) assert.ok(decodeTransactionHeader(f.bytes).compressed, 'stored compressed');
  });

  test('re-encodes to the same bytes', () => {
    const files = decodeSegmentObject(SEGMENT_FILE, DB, name, bytes).map((f) => segmentFileOf(f.bytes));
    assert.ok(encodeSegmentObject(DB, files, header.timestamp as number).equals(bytes));
    // From the uncompressed sources the lz4 bytes may differ between library versions; the content may not.
    const fresh = encodeSegmentObject(DB, sourceFiles(), SEGMENT_TIMESTAMP);
    assert.deepEqual(decodeSegmentObject('fresh', DB, name, fresh).map((f) => f.tx), decodeSegmentObject(SEGMENT_FILE, DB, name, bytes).map((f) => f.tx));
  });

  test('a key naming other TXIDs or another database is refused, naming the object', () => {
    assert.throws(() => decodeSegmentObject(SEGMENT_FILE, DB, { ...name, maxTxid: 7 }, bytes), { name: 'BackupObjectError', message: /^backup-segment\.bin: holds TXIDs 1\.\.6, its name says 1\.\.7$/ });
    assert.throws(() => decodeSegmentObject(SEGMENT_FILE, 'other.db', name, bytes), { name: 'BackupObjectError', message: /^backup-segment\.bin: holds database "app\.db", not "other\.db"$/ });
  });
});
