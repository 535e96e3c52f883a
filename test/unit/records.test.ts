// Checks src/replication/records.ts: the golden vectors in test/vectors/
// (stream-*.bin), round trips, the incremental reader under any split of its
// input, every validation rule (each a StreamError with a precise one-line
// message), corruption anywhere in a record, and snapshot assembly.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { compressSync } from 'lz4-napi';

import { lz4Implementation } from '../../src/txlog/lz4.js';
import { decodeSnapshotChunk, decodeWalSegment, encodeRecord, heartbeatRecord, MAX_CHUNK_PAGES, MAX_NAME, MAX_PAYLOAD, RecordFlag, recordTypeName, RecordType, SnapshotAssembler, snapshotChunkRecord, StreamError, walSegmentRecord, walSegmentRecordOfRun, type StreamRecord } from '../../src/replication/records.js';
import { RecordReader } from '../../src/replication/record-reader.js';
import { decodeHello, helloRecord } from '../../src/replication/hello.js';
import { CHECKSUM_FLAG, crc64, pageChecksum, PageChecksums } from '../../src/txlog/checksum.js';
import { encodeTransaction, type TransactionFile } from '../../src/txlog/txfile.js';
import { lockPageNumber } from '../../src/sqlite/dbheader.js';
import {
  buildStreamVectors, DB, describeVector, HELLO_INFO, PAGE_SIZE, vectorDatabase, vectorPage, VECTORS_DIR,
} from '../vectors/make-stream-vectors.js';
import { rng } from '../support/random.js';

/** All records of a byte string, fed in one piece; end() must accept it. */
function readAll(bytes: Buffer): StreamRecord[] {
  const reader = new RecordReader();
  reader.push(bytes);
  const out: StreamRecord[] = [];
  for (let r = reader.next(); r; r = reader.next()) out.push(r);
  reader.end();
  return out;
}

function readOne(bytes: Buffer): StreamRecord {
  const [record] = readAll(bytes);
  return record;
}

function expectStreamError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof StreamError, `expected StreamError, got ${String(err)}`);
    assert.match(err.message, message);
    assert.ok(!err.message.includes('\n'), 'message is one line');
    return true;
  });
}

/** The first record of `bytes` must fail in next(), with this message. */
function expectReadError(bytes: Buffer, message: RegExp): void {
  const reader = new RecordReader();
  reader.push(bytes);
  expectStreamError(() => reader.next(), message);
}

interface Craft {
  magic?: string; type: number; flags?: number; name?: string | Buffer; nameLength?: number; pageSize?: number; commitSize?: number;
  minTxid?: bigint; maxTxid?: bigint; pre?: bigint; post?: bigint; timestamp?: bigint; firstPgno?: number; pageCount?: number;
  payloadLength?: number; reserved?: number; payload?: Buffer;
}

/** Writes a record straight from the docs/protocol.md table, with no validation, sealed with a correct checksum. */
function craft(c: Craft): Buffer {
  const name = typeof c.name === 'string' ? Buffer.from(c.name, 'utf8') : c.name ?? Buffer.alloc(0);
  const payload = c.payload ?? Buffer.alloc(0);
  const out = Buffer.alloc(80 + name.length + payload.length);
  out.write(c.magic ?? 'LFSR', 0, 'latin1');
  out[4] = c.type;
  out[5] = c.flags ?? 0;
  out.writeUInt16BE(c.nameLength ?? name.length, 6);
  out.writeUInt32BE(c.pageSize ?? 0, 8);
  out.writeUInt32BE(c.commitSize ?? 0, 12);
  out.writeBigUInt64BE(c.minTxid ?? 0n, 16);
  out.writeBigUInt64BE(c.maxTxid ?? 0n, 24);
  out.writeBigUInt64BE(c.pre ?? 0n, 32);
  out.writeBigUInt64BE(c.post ?? 0n, 40);
  out.writeBigUInt64BE(c.timestamp ?? 1_700_000_000_000n, 48);
  out.writeUInt32BE(c.firstPgno ?? 0, 56);
  out.writeUInt32BE(c.pageCount ?? 0, 60);
  out.writeUInt32BE(c.payloadLength ?? payload.length, 64);
  out.writeUInt32BE(c.reserved ?? 0, 68);
  name.copy(out, 80);
  payload.copy(out, 80 + name.length);
  out.writeBigUInt64BE(crc64(out.subarray(80), crc64(out.subarray(0, 72))), 72);
  return out;
}

const POST = CHECKSUM_FLAG | 0x1234n;
const snapshotFields = { type: RecordType.Snapshot, name: DB, pageSize: 512, commitSize: 5, minTxid: 1n, maxTxid: 5n, post: POST, firstPgno: 1, pageCount: 3 };
const walFields = { type: RecordType.WalSegment, name: DB, pageSize: 512, commitSize: 5, minTxid: 6n, maxTxid: 7n, pre: POST, post: POST };

const vectors = buildStreamVectors();
const TYPE_BY_NAME = new Map([1, 2, 3, 4, 5, 6, 7].map((t) => [recordTypeName(t), t as RecordType]));
const vectorRecords = (name: string): Buffer[] => vectors.find((v) => v.name === name)!.records;

describe('golden vectors', () => {
  for (const v of vectors) {
    test(`${v.name}.bin decodes to ${v.name}.json and re-encodes byte for byte`, () => {
      const bytes = readFileSync(`${VECTORS_DIR}${v.name}.bin`);
      const json = JSON.parse(readFileSync(`${VECTORS_DIR}${v.name}.json`, 'utf8')) as { size: number; records: Record<string, unknown>[] };
      assert.deepEqual(JSON.parse(JSON.stringify(describeVector(`${v.name}.bin`, bytes))), json);
      assert.equal(bytes.length, json.size);
      // From the JSON fields alone (payload as given, so lz4 output does not matter):
      const again = json.records.map((f) => encodeRecord({
        type: TYPE_BY_NAME.get(f.type as string)!,
        flags: f.flags as number, name: f.name as string, pageSize: f.pageSize as number, commitSize: f.commitSize as number,
        minTxid: f.minTxid as number, maxTxid: f.maxTxid as number, preApplyChecksum: BigInt(`0x${f.preApplyChecksum}`),
        postApplyChecksum: BigInt(`0x${f.postApplyChecksum}`), timestamp: f.timestamp as number, firstPgno: f.firstPgno as number,
        pageCount: f.pageCount as number, payload: Buffer.from(f.payload as string, 'hex'),
      }));
      assert.ok(Buffer.concat(again).equals(bytes), 're-encoded from the JSON');
      if (v.reproducible) assert.ok(Buffer.concat(v.records).equals(bytes), 'the generator still writes these bytes');
    });
  }

  test('the lz4 snapshot vector holds the same pages as the raw one', () => {
    const raw = readAll(readFileSync(`${VECTORS_DIR}stream-snapshot-512.bin`));
    const lz4 = readAll(readFileSync(`${VECTORS_DIR}stream-snapshot-512-lz4.bin`));
    assert.deepEqual(lz4.map((r) => r.flags & RecordFlag.lz4), [RecordFlag.lz4, RecordFlag.lz4]);
    assert.deepEqual(lz4.map((r) => decodeSnapshotChunk(r)), raw.map((r) => decodeSnapshotChunk(r)));
    // Into memory the caller gives (what a restore does): the same pages, in that memory.
    const given: Buffer[] = [];
    const into = (size: number) => (given.push(Buffer.alloc(size, 0xee)), given[given.length - 1]!);
    const decoded = lz4.map((r) => decodeSnapshotChunk(r, into));
    assert.deepEqual(decoded, raw.map((r) => decodeSnapshotChunk(r)));
    assert.ok(decoded.every((pages, i) => pages === given[i]), 'decompressed into the given buffers');
    assert.equal(lz4Implementation(), 'native', 'build/Release/litefs_lz4.node loads');
  });

  test('the session vector is coherent: the snapshot verifies and the segment chains onto it', () => {
    const records = readAll(readFileSync(`${VECTORS_DIR}stream-session.bin`));
    assert.deepEqual(records.map((r) => RecordType[r.type]), ['Hello', 'Snapshot', 'Snapshot', 'WalSegment', 'Ready', 'Heartbeat', 'Drop', 'Handoff']);
    assert.deepEqual(decodeHello(records[0]), HELLO_INFO);
    const assembler = new SnapshotAssembler(records[1]);
    for (const chunk of records.slice(1, 3)) assembler.add(chunk, decodeSnapshotChunk(chunk));
    assert.ok(assembler.done);
    assembler.finish();
    const state = new PageChecksums(PAGE_SIZE);
    for (let pgno = 1; pgno <= 5; pgno++) state.set(pgno, vectorPage(pgno));
    const txs = decodeWalSegment(records[3]);
    assert.equal(txs[0].preApplyChecksum, records[1].postApplyChecksum);
    for (const tx of txs) for (const p of tx.pages) state.set(p.pgno, p.data);
    assert.equal(state.checksum, records[3].postApplyChecksum);
  });

  test('crafting from the documented table gives the encoder\'s bytes', () => {
    const [chunk] = vectorRecords('stream-snapshot-512');
    const r = readOne(chunk);
    const crafted = craft({ ...snapshotFields, post: r.postApplyChecksum, timestamp: BigInt(r.timestamp), flags: r.flags, payload: r.payload });
    assert.ok(crafted.equals(chunk));
  });
});

describe('round trips', () => {
  test('records of every type encode and decode to the same fields', () => {
    const random = rng(7);
    const { snapshotAt, pages } = vectorDatabase();
    const samples: Buffer[] = [
      heartbeatRecord(0), heartbeatRecord(Number.MAX_SAFE_INTEGER),
      encodeRecord({ type: RecordType.Drop, name: 'données-日本.db', timestamp: 5 }),
      encodeRecord({ type: RecordType.Drop, name: '\ufeffbom name with spaces', timestamp: 5 }),
      encodeRecord({ type: RecordType.Drop, name: 'x'.repeat(MAX_NAME), timestamp: 5 }),
      encodeRecord({ type: RecordType.Handoff, payload: Buffer.from('{"leaseId":"x"}'), timestamp: 9 }),
      snapshotChunkRecord(DB, { ...snapshotAt, maxTxid: Number.MAX_SAFE_INTEGER, postApplyChecksum: (1n << 64n) - 1n }, 2, pages.subarray(512, 1536), false, false, 3),
      ...vectorRecords('stream-session'),
    ];
    for (let i = 0; i < 50; i++) {
      const min = 2 + Math.floor(random() * 2 ** 40);
      samples.push(encodeRecord({
        ...walFields, minTxid: min, maxTxid: min + Math.floor(random() * 1000), preApplyChecksum: CHECKSUM_FLAG | BigInt(Math.floor(random() * 2 ** 52)),
        postApplyChecksum: CHECKSUM_FLAG | BigInt(Math.floor(random() * 2 ** 52)), timestamp: Math.floor(random() * 2 ** 45),
        payload: Buffer.alloc(112 + Math.floor(random() * 300), i),
      }));
    }
    for (const bytes of samples) {
      const r = readOne(bytes);
      assert.ok(encodeRecord(r).equals(bytes), `${RecordType[r.type]} ${r.name}`);
    }
  });

  test('HELLO: known keys round-trip, unknown keys are ignored, bad ones rejected', () => {
    assert.deepEqual(decodeHello(readOne(helloRecord(HELLO_INFO, 1))), HELLO_INFO);
    assert.deepEqual(decodeHello(readOne(helloRecord({ version: 1, hostname: 'h' }, 1))), { version: 1, hostname: 'h' });
    const hello = (json: string) => readOne(encodeRecord({ type: RecordType.Hello, payload: Buffer.from(json), timestamp: 1 }));
    assert.deepEqual(decodeHello(hello('{"version":1,"hostname":"h","future":{"x":[1]},"heartbeatMs":250}')), { version: 1, hostname: 'h', heartbeatMs: 250 });
    const cases: [string, RegExp][] = [
      ['{"version":2,"hostname":"h"}', /^stream record #1 \(HELLO\): protocol version 2 is not supported \(this node speaks 1\)$/],
      ['{"version":1,"hostname":""}', /"hostname" must be a non-empty string$/],
      ['{"version":1}', /"hostname" must be a non-empty string$/],
      ['[1]', /HELLO payload is not a JSON object$/],
      ['{"version":1,', /HELLO payload is not UTF-8 JSON: /],
      ['{"version":1,"hostname":"h","heartbeatMs":-1}', /"heartbeatMs" must be a positive integer$/],
      ['{"version":1,"hostname":"h","nodeId":5}', /"nodeId" must be a string$/],
    ];
    for (const [json, message] of cases) expectStreamError(() => decodeHello(hello(json)), message);
    expectStreamError(() => helloRecord({ version: 1, hostname: '' }), /^stream record \(HELLO\): HELLO "hostname" must be a non-empty string$/);
  });
});

describe('RecordReader', () => {
  const session = Buffer.concat(vectorRecords('stream-session'));
  const whole = readAll(session);
  const largest = Math.max(...vectorRecords('stream-session').map((r) => r.length));

  test('byte by byte and in random splits it yields the same records', () => {
    const splits: number[][] = [Array.from({ length: session.length }, () => 1)];
    const random = rng(11);
    for (let round = 0; round < 30; round++) {
      const sizes: number[] = [];
      for (let total = 0; total < session.length; total += sizes[sizes.length - 1]) sizes.push(1 + Math.floor(random() * random() * 2000));
      splits.push(sizes);
    }
    for (const sizes of splits) {
      const reader = new RecordReader();
      const got: StreamRecord[] = [];
      let offset = 0;
      for (const size of sizes) {
        reader.push(session.subarray(offset, offset + size));
        offset += size;
        for (let r = reader.next(); r; r = reader.next()) got.push(r);
        assert.ok(reader.pending < largest, 'holds less than one record between calls');
      }
      reader.end();
      assert.equal(reader.pending, 0);
      assert.deepEqual(got, whole);
    }
  });

  test('an absurd length fails on the header alone, before any allocation', () => {
    for (const c of [{ ...walFields, payloadLength: 0xffffffff }, { ...walFields, payloadLength: MAX_PAYLOAD + 1 }, { ...walFields, nameLength: 0xffff }]) {
      const reader = new RecordReader();
      reader.push(craft(c).subarray(0, 80));
      expectStreamError(() => reader.next(), /^stream record #1 \(WAL_SEGMENT\): (payload length \d+ exceeds 68157440|name length 65535 exceeds 1024)$/);
      assert.equal(reader.pending, 0, 'dropped what it held');
    }
  });

  test('a truncated stream is caught by end()', () => {
    for (const cut of [1, 2, 50, 80, 100, session.length - 1]) {
      const reader = new RecordReader();
      reader.push(session.subarray(0, cut));
      while (reader.next());
      assert.ok(reader.pending > 0);
      expectStreamError(() => reader.end(), /^stream record #\d+( \([A-Z_]+\))?: truncated: stream ended after \d+ of \d+ (header|record) bytes$/);
    }
    const reader = new RecordReader();
    reader.push(session.subarray(0, session.length - 1));
    while (reader.next());
    expectStreamError(() => reader.end(), /^stream record #8 \(HANDOFF\): truncated: stream ended after 103 of 104 record bytes$/);
  });

  test('after an error it stays failed and numbers records from 1', () => {
    const reader = new RecordReader();
    reader.push(Buffer.concat([heartbeatRecord(1), heartbeatRecord(2), craft({ type: 9 })]));
    assert.ok(reader.next());
    assert.ok(reader.next());
    expectStreamError(() => reader.next(), /^stream record #3 \(type 9\): unknown record type 9$/);
    reader.push(heartbeatRecord(3));
    expectStreamError(() => reader.next(), /^stream record #3 /);
    expectStreamError(() => reader.end(), /^stream record #3 /);
  });

  test('every validation rule, each with its message', () => {
    const chunk = Buffer.alloc(3 * 512, 1);
    const cases: [Craft, RegExp][] = [
      [{ type: 5, magic: 'LFSX' }, /^stream record #1 \(HEARTBEAT\): bad magic 4c465358 \(expected "LFSR"\)$/],
      [{ type: 0 }, /^stream record #1 \(type 0\): unknown record type 0$/],
      [{ type: 8 }, /^stream record #1 \(type 8\): unknown record type 8$/],
      [{ type: 5, reserved: 1 }, /^stream record #1 \(HEARTBEAT\): reserved header bytes 68\.\.71 are not zero$/],
      [{ ...snapshotFields, flags: 4, payload: chunk }, /^stream record #1 \(SNAPSHOT\): unknown flag bits 0x4$/],
      [{ type: 5, flags: 1 }, /^stream record #1 \(HEARTBEAT\): flags 0x1 on HEARTBEAT \(only SNAPSHOT has flags\)$/],
      [{ ...walFields, flags: 2, payload: Buffer.alloc(200) }, /\(WAL_SEGMENT\): flags 0x2 on WAL_SEGMENT/],
      [{ type: 6, name: 'x'.repeat(MAX_NAME + 1) }, /^stream record #1 \(DROP\): name length 1025 exceeds 1024$/],
      [{ type: 6 }, /^stream record #1 \(DROP\): name length 0: DROP needs a database name$/],
      [{ type: 5, name: 'x' }, /^stream record #1 \(HEARTBEAT\): name length 1: HEARTBEAT has no database name$/],
      [{ type: 1, name: 'x', payload: Buffer.from('{}') }, /\(HELLO\): name length 1: HELLO has no database name$/],
      [{ type: 6, name: Buffer.from([0x61, 0xff]) }, /^stream record #1 \(DROP a\ufffd\): name is not valid UTF-8$/],
      [{ type: 6, name: 'a/b' }, /^stream record #1 \(DROP a\/b\): name "a\/b" contains "\/"$/],
      [{ type: 6, name: 'a\0b' }, /^stream record #1 \(DROP "a\\u0000b"\): name "a\\u0000b" contains NUL$/],
      [{ type: 6, name: '.' }, /\(DROP \.\): name "\." is not a database name$/],
      [{ type: 6, name: '..' }, /\(DROP \.\.\): name "\.\." is not a database name$/],
      [{ ...walFields, pageSize: 1000, payload: Buffer.alloc(200) }, /^stream record #1 \(WAL_SEGMENT\): page size 1000 is not a power of two in 512\.\.65536$/],
      [{ ...walFields, pageSize: 131072, payload: Buffer.alloc(200) }, /page size 131072 is not a power of two/],
      [{ type: 5, pageSize: 512 }, /^stream record #1 \(HEARTBEAT\): page size 512 on HEARTBEAT \(must be 0\)$/],
      [{ type: 6, name: 'a', maxTxid: 3n }, /\(DROP\): max TXID 3 on DROP \(must be 0\)$/],
      [{ ...snapshotFields, pre: POST, payload: chunk }, /\(SNAPSHOT\): pre-apply checksum \d+ on SNAPSHOT \(must be 0\)$/],
      [{ ...walFields, firstPgno: 1, payload: Buffer.alloc(200) }, /first pgno 1 on WAL_SEGMENT \(must be 0\)$/],
      [{ ...walFields, payloadLength: MAX_PAYLOAD + 1 }, /^stream record #1 \(WAL_SEGMENT\): payload length 68157441 exceeds 68157440$/],
      [{ ...snapshotFields, pageCount: MAX_CHUNK_PAGES + 1, commitSize: 10000 }, /^stream record #1 \(SNAPSHOT\): page count 4097 is not in 1\.\.4096$/],
      [{ ...snapshotFields, pageCount: 0 }, /page count 0 is not in 1\.\.4096$/],
      [{ ...snapshotFields, pageSize: 65536, pageCount: 1025, commitSize: 2000 }, /1025 pages of 65536 bytes exceed the 67108864-byte chunk limit$/],
      [{ ...walFields, minTxid: 2n ** 53n, maxTxid: 2n ** 53n }, /^stream record #1 \(WAL_SEGMENT\): min TXID 9007199254740992 exceeds 2\^53-1$/],
      [{ ...walFields, maxTxid: 2n ** 64n - 1n }, /max TXID 18446744073709551615 exceeds 2\^53-1$/],
      [{ type: 5, timestamp: 2n ** 60n }, /\(HEARTBEAT\): timestamp \d+ exceeds 2\^53-1$/],
      [{ ...walFields, minTxid: 8n, maxTxid: 7n }, /^stream record #1 \(WAL_SEGMENT\): min TXID 8 is above max TXID 7$/],
      [{ ...walFields, minTxid: 0n }, /min TXID 0 \(must be at least 1\)$/],
      [{ ...walFields, commitSize: 0 }, /commit size 0 \(must be at least 1\)$/],
      [{ ...walFields, post: 5n }, /post-apply checksum 0000000000000005 lacks the flag bit$/],
      [{ ...walFields, pre: 5n }, /pre-apply checksum 0000000000000005 lacks the flag bit$/],
      [{ ...walFields, minTxid: 1n }, /pre-apply checksum [0-9a-f]{16} with min TXID 1 \(must be 0\)$/],
      [{ ...walFields, payload: Buffer.alloc(111) }, /payload length 111 cannot hold a transaction file$/],
      [{ ...snapshotFields, minTxid: 2n }, /\(SNAPSHOT\): min TXID 2 \(a SNAPSHOT's is 1\)$/],
      [{ ...snapshotFields, firstPgno: 0 }, /first pgno 0$/],
      [{ ...snapshotFields, firstPgno: 4 }, /chunk pages 4\.\.6 go beyond commit size 5$/],
      [{ ...snapshotFields, pageSize: 65536, commitSize: 20000, firstPgno: 16384, pageCount: 2 }, /chunk pages 16384\.\.16385 include the lock page 16385$/],
      [{ ...snapshotFields, payload: chunk.subarray(1) }, /payload length 1535 is not 3 pages of 512 bytes \(1536\)$/],
      [{ ...snapshotFields, flags: RecordFlag.lz4, payload: Buffer.alloc(4) }, /lz4 payload of 4 bytes is too short$/],
      [{ type: 5, payload: Buffer.from('x') }, /^stream record #1 \(HEARTBEAT\): payload length 1: HEARTBEAT has no payload$/],
      [{ type: 4, payload: Buffer.from('x') }, /^stream record #1 \(READY\): payload length 1: READY has no payload$/],
      [{ type: 6, name: 'a', payload: Buffer.from('x') }, /\(DROP\): payload length 1: DROP has no payload$/],
    ];
    for (const [c, message] of cases) expectReadError(craft(c), message);
    const sealed = heartbeatRecord(1);
    sealed[75] ^= 1;
    expectReadError(sealed, /^stream record #1 \(HEARTBEAT\): record checksum mismatch \(corrupt\): stored [0-9a-f]{16}, computed [0-9a-f]{16}$/);
    const drop = craft({ type: 6, name: 'old.db' });
    drop[81] ^= 0x43; // 'l' -> '/': the checksum is checked before the name rules
    expectReadError(drop, /^stream record #1 \(DROP o\/d\.db\): record checksum mismatch \(corrupt\)/);
  });

  test('a flipped bit anywhere in a record is rejected', () => {
    const samples = [...vectorRecords('stream-session').slice(0, 4), ...vectorRecords('stream-snapshot-512-lz4'), vectorRecords('stream-drop')[0]];
    let flips = 0;
    for (const record of samples) {
      for (let at = 0; at < record.length; at++) {
        const bad = Buffer.from(record);
        bad[at] ^= 1 << (at % 8);
        const reader = new RecordReader();
        reader.push(bad);
        assert.throws(() => {
          while (reader.next());
          reader.end();
        }, StreamError, `byte ${at} of a ${record.length}-byte record`);
        flips++;
      }
    }
    assert.ok(flips > 5000);
  });
});

describe('encoder', () => {
  test('refuses what the reader would reject', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => encodeRecord({ type: 9 as RecordType }), /^stream record \(type 9\): unknown record type 9$/],
      [() => encodeRecord({ type: RecordType.Drop, name: 'a/b' }), /^stream record \(DROP a\/b\): name "a\/b" contains "\/"$/],
      [() => encodeRecord({ type: RecordType.Drop, name: '..' }), /is not a database name$/],
      [() => encodeRecord({ type: RecordType.Drop, name: 'a\ud800' }), /name is not well-formed Unicode$/],
      [() => encodeRecord({ type: RecordType.Drop }), /name length 0: DROP needs a database name$/],
      [() => encodeRecord({ type: RecordType.Heartbeat, payload: Buffer.from('x') }), /HEARTBEAT has no payload$/],
      [() => encodeRecord({ type: RecordType.Heartbeat, flags: RecordFlag.last }), /flags 0x2 on HEARTBEAT/],
      [() => encodeRecord({ type: RecordType.Heartbeat, timestamp: -1 }), /timestamp -1 is not an integer in 0\.\.9007199254740991$/],
      [() => encodeRecord({ ...walFields, minTxid: 6, maxTxid: 7.5, preApplyChecksum: POST, postApplyChecksum: POST }), /max TXID 7\.5 is not an integer/],
      [() => encodeRecord({ ...walFields, minTxid: 6, maxTxid: 7, preApplyChecksum: 5 as unknown as bigint }), /pre-apply checksum 5 is not a u64 bigint$/],
      [() => encodeRecord({ type: RecordType.Snapshot, name: DB, flags: RecordFlag.lz4, pageSize: 512, commitSize: 5, minTxid: 1, maxTxid: 5, postApplyChecksum: POST, firstPgno: 1, pageCount: 3, payload: Buffer.from([1, 0, 0, 0, 0]) }),
        /lz4 payload declares 1 uncompressed bytes, the chunk's pages are 1536$/],
      [() => snapshotChunkRecord(DB, vectorDatabase().snapshotAt, 1, Buffer.alloc(700), false, false), /700 bytes of pages are not whole 512-byte pages$/],
      [() => snapshotChunkRecord(DB, { ...vectorDatabase().snapshotAt, commitSize: 2 }, 1, Buffer.alloc(1536), false, false), /chunk pages 1\.\.3 go beyond commit size 2$/],
    ];
    for (const [fn, message] of cases) expectStreamError(fn, message);
  });

  test('snapshot chunks are lz4 only when that is smaller; lz4 output is deterministic', () => {
    const { snapshotAt, pages } = vectorDatabase();
    assert.ok(compressSync(pages).equals(compressSync(pages)));
    const packed = readOne(snapshotChunkRecord(DB, snapshotAt, 1, pages, true, true, 1));
    assert.equal(packed.flags, RecordFlag.lz4 | RecordFlag.last);
    assert.ok(decodeSnapshotChunk(packed).equals(pages));
    const random = rng(5);
    const noise = Buffer.from(Array.from({ length: 5 * 512 }, () => Math.floor(random() * 256)));
    assert.equal(readOne(snapshotChunkRecord(DB, snapshotAt, 1, noise, true, true, 1)).flags, RecordFlag.last);
  });

  test('walSegmentRecord checks the files it is given', () => {
    const { txs } = vectorDatabase();
    const files = txs.map((tx) => ({ ...tx, bytes: encodeTransaction(tx, { compress: false }) }));
    expectStreamError(() => walSegmentRecord(DB, []), /^stream record \(WAL_SEGMENT app\.db\): no transaction files$/);
    expectStreamError(() => walSegmentRecord(DB, [files[0], files[0]]), /0000000000000006-0000000000000006\.ltx does not follow 0000000000000006-0000000000000006\.ltx$/);
    expectStreamError(() => walSegmentRecord(DB, [{ ...files[0], postApplyChecksum: POST }]), /file 1: the given post-apply checksum disagree with its bytes$/);
    expectStreamError(() => walSegmentRecord(DB, [{ ...files[1], bytes: files[0].bytes }]), /file 1: the given min TXID, max TXID, pre-apply checksum, post-apply checksum, commit size disagree/);
  });

  test('walSegmentRecordOfRun gives walSegmentRecord\'s bytes for a run read from the log, and checks it', () => {
    const { txs } = vectorDatabase();
    for (const compress of [false, true]) {
      const files = txs.map((tx) => ({ ...tx, bytes: encodeTransaction(tx, { compress }) }));
      const run = Buffer.concat(files.map((f) => f.bytes));
      const entries = files.map((f) => ({ length: f.bytes.length }));
      assert.ok(walSegmentRecordOfRun(DB, run, entries, 7).equals(walSegmentRecord(DB, files, 7)));
      assert.ok(walSegmentRecordOfRun(DB, files[1].bytes, entries.slice(1), 7).equals(walSegmentRecord(DB, files.slice(1), 7)));
      expectStreamError(() => walSegmentRecordOfRun(DB, run, []), /^stream record \(WAL_SEGMENT app\.db\): no transaction files$/);
      const twice = Buffer.concat([files[0].bytes, files[0].bytes]);
      expectStreamError(() => walSegmentRecordOfRun(DB, twice, [entries[0], entries[0]]), /0000000000000006-0000000000000006\.ltx does not follow 0000000000000006-0000000000000006\.ltx$/);
      expectStreamError(() => walSegmentRecordOfRun(DB, run, [{ length: entries[0].length + entries[1].length }]), new RegExp(`file 1: its header says ${entries[0].length} bytes, the log holds ${entries[0].length + entries[1].length}$`));
      expectStreamError(() => walSegmentRecordOfRun(DB, Buffer.concat([run, Buffer.alloc(5)]), entries), new RegExp(`the run holds ${run.length + 5} bytes, its files ${run.length}$`));
      expectStreamError(() => walSegmentRecordOfRun(DB, Buffer.from(run).fill(0, 0, 4), entries), /file 1: transaction file: bad magic 00000000/);
    }
  });
});

describe('payload decoders', () => {
  const { txs } = vectorDatabase();
  const segment = readOne(vectorRecords('stream-wal-segment')[0]);
  const rewrap = (fields: Partial<StreamRecord>) => readOne(encodeRecord({ ...segment, ...fields }));

  test('decodeWalSegment verifies files, chain and header', () => {
    assert.deepEqual(decodeWalSegment(segment).map((tx) => tx.maxTxid), [6, 7]);
    const [a, b] = txs.map((tx) => encodeTransaction(tx, { compress: false }));
    const corrupt = Buffer.from(segment.payload);
    corrupt[200] ^= 1;
    const first: TransactionFile = { ...txs[0], minTxid: 1, maxTxid: 1, preApplyChecksum: 0n, commitSize: 1, pages: [{ pgno: 1, data: vectorPage(1) }], postApplyChecksum: CHECKSUM_FLAG | pageChecksum(1, vectorPage(1)) };
    const second: TransactionFile = { ...txs[0], minTxid: 2, maxTxid: 2, preApplyChecksum: first.postApplyChecksum, commitSize: 1, pages: first.pages, postApplyChecksum: first.postApplyChecksum };
    const cases: [StreamRecord, RegExp][] = [
      [rewrap({ payload: corrupt }), /^stream record #1 \(WAL_SEGMENT app\.db\): transaction file 0000000000000006-0000000000000006\.ltx: trailer checksum mismatch/],
      [rewrap({ payload: Buffer.concat([a, a]) }), /transaction file 0000000000000006-0000000000000006\.ltx: min TXID 6 does not follow max TXID 6$/],
      [rewrap({ payload: Buffer.concat([a, b.subarray(0, 100)]) }), /transaction file 0000000000000007-0000000000000007\.ltx: truncated: 100 of \d+ bytes$/],
      [rewrap({ payload: Buffer.concat([a, Buffer.alloc(50)]) }), /transaction file at payload offset 628: bad magic 00000000/],
      [rewrap({ minTxid: 5 }), /first transaction starts at TXID 6, header min TXID is 5$/],
      [rewrap({ preApplyChecksum: POST }), /first transaction's pre-apply checksum [0-9a-f]{16} differs from the header's 8000000000001234$/],
      [rewrap({ maxTxid: 8 }), /last transaction ends at TXID 7, header max TXID is 8$/],
      [rewrap({ postApplyChecksum: POST }), /last transaction's post-apply checksum [0-9a-f]{16} differs from the header's 8000000000001234$/],
      [rewrap({ commitSize: 5 }), /last transaction's commit size 6 differs from the header's 5$/],
      [rewrap({ pageSize: 1024 }), /0000000000000006-0000000000000006\.ltx has page size 512, header says 1024$/],
    ];
    for (const [r, message] of cases) expectStreamError(() => decodeWalSegment(r), message);
    // A new database's first commits: the TXID-1 file is a whole database (txfile.ts checks that), others may follow it.
    const newDb = [first, second].map((tx) => ({ ...tx, bytes: encodeTransaction(tx, { compress: false }) }));
    assert.deepEqual(decodeWalSegment(readOne(walSegmentRecord('new.db', newDb.slice(0, 1), 1))).map((tx) => tx.maxTxid), [1]);
    assert.deepEqual(decodeWalSegment(readOne(walSegmentRecord('new.db', newDb, 1))).map((tx) => tx.maxTxid), [1, 2]);
    expectStreamError(() => decodeWalSegment(readOne(heartbeatRecord(1))), /not a WAL_SEGMENT record$/);
  });

  test('decodeSnapshotChunk checks the lz4 length before decompressing', () => {
    const base = { ...snapshotFields, flags: RecordFlag.lz4 };
    const cases: [Buffer, RegExp][] = [
      [craft({ ...base, payload: Buffer.from([1, 6, 0, 0, 0xff, 0xff]) }), /^stream record #1 \(SNAPSHOT app\.db\): lz4 payload declares 1537 uncompressed bytes, the chunk's pages are 1536$/],
      [craft({ ...base, payload: Buffer.from([0, 6, 0, 0, 0xff, 0xff]) }), /lz4 payload corrupt/],
      [craft({ ...base, payload: Buffer.concat([Buffer.from([0, 6, 0, 0]), compressSync(Buffer.alloc(100)).subarray(4)]) }), /lz4 payload corrupt/],
    ];
    for (const [bytes, message] of cases) {
      expectStreamError(() => decodeSnapshotChunk(readOne(bytes)), message);
      expectStreamError(() => decodeSnapshotChunk(readOne(bytes), (size) => Buffer.alloc(size)), message);
    }
    // Decompressing into given memory: a block that decodes short or long of the chunk is corrupt too.
    const pages = Buffer.alloc(1536, 7);
    const short = Buffer.concat([Buffer.from([0, 6, 0, 0]), compressSync(pages.subarray(0, 1024)).subarray(4)]);
    const long = Buffer.concat([Buffer.from([0, 6, 0, 0]), compressSync(Buffer.alloc(2048, 7)).subarray(4)]);
    for (const payload of [short, long]) {
      expectStreamError(() => decodeSnapshotChunk(readOne(craft({ ...base, payload })), (size) => Buffer.alloc(size)), /lz4 payload corrupt$/);
    }
    assert.ok(decodeSnapshotChunk(readOne(craft({ ...base, payload: compressSync(pages) })), (size) => Buffer.alloc(size)).equals(pages));
  });
});

describe('SnapshotAssembler', () => {
  const { snapshotAt, pages } = vectorDatabase();
  const chunk = (first: number, count: number, last: boolean, over: Partial<typeof snapshotAt> & { name?: string } = {}) =>
    readOne(snapshotChunkRecord(over.name ?? DB, { ...snapshotAt, ...over }, first, pages.subarray((first - 1) * 512, (first - 1 + count) * 512), last, false, 1));
  const feed = (...records: StreamRecord[]) => {
    const assembler = new SnapshotAssembler(records[0]);
    for (const r of records) assembler.add(r, r.type === RecordType.Snapshot ? decodeSnapshotChunk(r) : Buffer.alloc(0));
    return assembler;
  };

  test('assembles in any chunking and verifies the checksum', () => {
    for (const cuts of [[5], [1, 4], [3, 2], [1, 1, 1, 1, 1]]) {
      let first = 1;
      const records = cuts.map((count, i) => chunk((first += count) - count, count, i === cuts.length - 1));
      const assembler = feed(...records);
      assert.ok(assembler.done);
      assert.equal(assembler.checksum, snapshotAt.postApplyChecksum);
      assembler.finish();
      // The page checksums it kept are the ones the transactions that follow build on.
      assert.equal(assembler.checksums.pageCount, snapshotAt.commitSize);
      for (let pgno = 1; pgno <= 5; pgno++) assert.equal(assembler.checksums.get(pgno), pageChecksum(pgno, pages.subarray((pgno - 1) * 512, pgno * 512)));
    }
  });

  test('rejects a wrong checksum, gaps, stray chunks and missing LAST', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => feed(chunk(1, 3, false, { postApplyChecksum: POST }), chunk(4, 2, true, { postApplyChecksum: POST })).finish(),
        /^stream record #1 \(SNAPSHOT app\.db\): snapshot checksum [0-9a-f]{16} differs from its post-apply checksum 8000000000001234$/],
      [() => feed(chunk(1, 2, false), chunk(4, 2, true)), /chunk starts at page 4, expected 3$/],
      [() => feed(chunk(4, 2, true)), /chunk starts at page 4, expected 1$/],
      [() => feed(chunk(1, 3, false), chunk(4, 2, true), chunk(4, 2, true)), /chunk after the LAST chunk of the snapshot of app\.db$/],
      [() => feed(chunk(1, 3, false), chunk(4, 2, true, { name: 'other.db' })), /^stream record #1 \(SNAPSHOT other\.db\): chunk for another database inside the snapshot of app\.db$/],
      [() => feed(chunk(1, 3, false), chunk(4, 2, true, { maxTxid: 6 })), /maxTxid 6 differs from the snapshot's first chunk \(5\)$/],
      [() => feed(chunk(1, 3, false), readOne(heartbeatRecord(1))), /HEARTBEAT inside the snapshot of app\.db$/],
      [() => feed(chunk(1, 3, true)), /LAST chunk ends at page 3, the database ends at page 5$/],
      [() => feed(chunk(1, 5, false)), /chunk reaches the database's last page 5 without the LAST flag$/],
      [() => feed(chunk(1, 3, false)).finish(), /snapshot ended before its LAST chunk \(next page 4 of 5\)$/],
      [() => new SnapshotAssembler(chunk(1, 3, false)).add(chunk(1, 3, false), pages.subarray(0, 512)), /512 bytes of pages, the chunk has 3 of 512 bytes$/],
    ];
    for (const [fn, message] of cases) expectStreamError(fn, message);
  });

  test('chunks skip the lock page (64 KiB pages: 1 GiB of zero pages before it)', () => {
    const pageSize = 65536;
    const lockPage = lockPageNumber(pageSize);
    const perChunk = 1024;
    const zeros = Buffer.alloc(perChunk * pageSize);
    const at = { type: RecordType.Snapshot, flags: 0, name: DB, pageSize, commitSize: lockPage + 1, minTxid: 1, maxTxid: 9, preApplyChecksum: 0n, postApplyChecksum: POST, timestamp: 1, payload: Buffer.alloc(0) };
    const rec = (firstPgno: number, pageCount: number, last = false): StreamRecord => ({ ...at, firstPgno, pageCount, flags: last ? RecordFlag.last : 0 });
    const pagesOf = (count: number) => zeros.subarray(0, count * pageSize);
    const assembler = new SnapshotAssembler(rec(1, perChunk));
    let next = 1;
    for (; next + perChunk <= lockPage - 1; next += perChunk) assembler.add(rec(next, perChunk), zeros);
    assembler.add(rec(next, lockPage - 2 - next + 1), pagesOf(lockPage - 2 - next + 1)); // up to lockPage - 2
    expectStreamError(() => assembler.add(rec(lockPage - 1, 2), pagesOf(2)), /chunk pages 16384\.\.16385 include the lock page 16385$/);
    assembler.add(rec(lockPage - 1, 1), pagesOf(1));
    expectStreamError(() => assembler.add(rec(lockPage, 1, true), pagesOf(1)), /chunk starts at page 16385, expected 16386 \(chunks skip the lock page 16385\)$/);
    expectStreamError(() => assembler.add(rec(lockPage + 2, 1, true), pagesOf(1)), /chunk starts at page 16387, expected 16386$/);
    const before = assembler.checksum;
    assembler.add(rec(lockPage + 1, 1, true), pagesOf(1));
    assert.ok(assembler.done);
    assert.equal(assembler.checksum, (before ^ pageChecksum(lockPage + 1, pagesOf(1))) | CHECKSUM_FLAG);
    expectStreamError(() => assembler.finish(), new RegExp(`snapshot checksum ${assembler.checksum.toString(16)} differs`));
  });
});
