// RecordReader's snapshotMemory (src/replication/record-reader.ts) with an
// AlignedPool (src/store/direct-file.ts): raw SNAPSHOT records that span
// pushed chunks are assembled in the pool's memory with their pages on a
// 4096-byte boundary (lz4 ones in compressedSnapshotScratch when given),
// every record still comes out as without it, and
// DirectFileWriter writes pool memory as it is and gives it back only once
// the write is done. The encoder's two-part records (encodeRecordParts)
// are the same bytes as encodeRecord's.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { encodeRecord, encodeRecordParts, heartbeatRecord, RecordType, snapshotChunkRecord, snapshotChunkRecordParts, StreamError, walSegmentRecord, type StreamRecord } from '../../src/replication/records.js';
import { RecordReader } from '../../src/replication/record-reader.js';
import { AlignedPool, DirectFileWriter } from '../../src/store/direct-file.js';
import { databaseChecksum } from '../../src/txlog/checksum.js';
import { encodeTransaction } from '../../src/txlog/txfile.js';
import { vectorDatabase } from '../vectors/make-stream-vectors.js';
import { rng } from '../support/random.js';

const PAGE = 4096;
const DB = 'big.db';
const PAGES = 200;
const random = rng(5);
/** 200 pages: random ones (sent raw) and zero-filled ones (lz4 shrinks them). */
const image = Buffer.concat(Array.from({ length: PAGES }, (_, i) => (i >= 64 && i < 128 ? Buffer.alloc(PAGE) : Buffer.from(Array.from({ length: PAGE }, () => Math.floor(random() * 256))))));
const at = {
  maxTxid: 9, pageSize: PAGE, commitSize: PAGES,
  postApplyChecksum: databaseChecksum(Array.from({ length: PAGES }, (_, i): [number, Uint8Array] => [i + 1, image.subarray(i * PAGE, (i + 1) * PAGE)]), PAGE),
};
const chunk = (first: number, count: number, compress: boolean) =>
  snapshotChunkRecord(DB, at, first, image.subarray((first - 1) * PAGE, (first - 1 + count) * PAGE), first + count - 1 === PAGES, compress, 1000 + first);

/** A session: heartbeat, raw chunks, an lz4 chunk, raw chunks, a WAL segment. */
function session(): Buffer[] {
  const v = vectorDatabase();
  const files = v.txs.map((tx) => ({ ...tx, bytes: encodeTransaction(tx, { compress: false }) }));
  return [
    heartbeatRecord(1), chunk(1, 64, false), chunk(65, 64, true), chunk(129, 8, false), chunk(137, 64, false),
    walSegmentRecord('other.db', files, 2), heartbeatRecord(3),
  ];
}

function readSplit(bytes: Buffer, sizes: () => number, reader: RecordReader, onRecord?: (r: StreamRecord) => void): StreamRecord[] {
  const out: StreamRecord[] = [];
  for (let offset = 0; offset < bytes.length;) {
    const n = sizes();
    reader.push(bytes.subarray(offset, offset + n));
    offset += n;
    for (let r = reader.next(); r; r = reader.next()) {
      out.push(r);
      onRecord?.(r);
    }
  }
  reader.end();
  return out;
}

describe('RecordReader with snapshotMemory', () => {
  test('in any split it yields the same records; raw chunks that span pushes land in the pool, pages aligned', () => {
    const records = session();
    const bytes = Buffer.concat(records);
    const plain = readSplit(bytes, () => bytes.length, new RecordReader());
    for (const maxSplit of [1000, 65536, 300_000]) {
      const pool = new AlignedPool();
      let taken = 0;
      const reader = new RecordReader({ snapshotMemory: (prefix, size) => (taken++, pool.take(prefix, size)) });
      const got: StreamRecord[] = [];
      readSplit(bytes, () => 1 + Math.floor(random() * maxSplit), reader, (r) => {
        got.push({ ...r, payload: Buffer.from(r.payload) });
        const raw = r.type === RecordType.Snapshot && r.payload.length === r.pageCount * PAGE;
        const pooled = pool.holdsAligned(r.payload);
        if (pooled) assert.ok(raw, 'only raw SNAPSHOT pages are assembled in the pool');
        if (raw && r.pageCount === 64 && maxSplit <= 65536) assert.ok(pooled, `split ${maxSplit}: a 256 KiB chunk spans pushes, so it is in the pool, pages aligned`);
        if (pooled) pool.giveBack(r.payload); // as DirectFileWriter does once written: the next record may reuse it
        assert.ok(reader.pending < 300_000 + 80, 'holds at most a record and a pushed piece');
      });
      assert.deepEqual(got, plain.map((r) => ({ ...r, payload: Buffer.from(r.payload) })));
      assert.ok(taken >= 2, `split ${maxSplit}: the pool was asked ${taken} times`);
    }
  });

  test('without the pool\'s memory (undefined) a record is assembled as before', () => {
    const bytes = Buffer.concat(session());
    const got = readSplit(bytes, () => 4000, new RecordReader({ snapshotMemory: () => undefined }));
    assert.deepEqual(got, readSplit(bytes, () => bytes.length, new RecordReader()));
  });

  test('lz4 chunks that span pushes are assembled in compressedSnapshotScratch; every record comes out as without it', () => {
    const bytes = Buffer.concat(session());
    const plain = readSplit(bytes, () => bytes.length, new RecordReader());
    const scratch = Buffer.alloc(1 << 20);
    let given = 0;
    const reader = new RecordReader({ compressedSnapshotScratch: (size) => (given++, scratch.subarray(0, size)) });
    const got: StreamRecord[] = [];
    readSplit(bytes, () => 300, reader, (r) => {
      const lz4 = r.type === RecordType.Snapshot && r.payload.length !== r.pageCount * PAGE;
      assert.equal(r.payload.buffer === scratch.buffer, lz4, 'the lz4 chunk, and only it, lies in the scratch');
      got.push({ ...r, payload: Buffer.from(r.payload) }); // copied: the scratch is the next lz4 chunk's
    });
    assert.deepEqual(got, plain.map((r) => ({ ...r, payload: Buffer.from(r.payload) })));
    assert.equal(given, 1, 'asked once, for the one lz4 chunk');
  });

  test('a stream cut inside an assembled record is truncated; a corrupt one fails its checksum', () => {
    const record = chunk(1, 64, false);
    const pool = new AlignedPool();
    const cut = new RecordReader({ snapshotMemory: pool.take });
    cut.push(record.subarray(0, 1000));
    cut.push(record.subarray(1000, 200_000));
    assert.equal(cut.next(), undefined);
    assert.equal(cut.pending, 200_000);
    assert.throws(() => cut.end(), (err: unknown) => err instanceof StreamError && err.message === `stream record #1 (SNAPSHOT): truncated: stream ended after 200000 of ${record.length} record bytes`);

    const corrupt = Buffer.from(record);
    corrupt[150_000]! ^= 0x10;
    const reader = new RecordReader({ snapshotMemory: pool.take });
    reader.push(corrupt.subarray(0, 5000));
    reader.push(corrupt.subarray(5000));
    assert.throws(() => reader.next(), (err: unknown) => err instanceof StreamError && /record checksum mismatch \(corrupt\)/.test(err.message));
    assert.equal(reader.pending, 0, 'dropped what it held');
  });
});

describe('encodeRecordParts', () => {
  test('header and payload are the bytes encodeRecord gives, the payload not copied', () => {
    const payload = crypto.randomBytes(3000);
    const fields = { type: RecordType.Hello, timestamp: 77, payload } as const;
    const [prefix, body] = encodeRecordParts(fields);
    assert.equal(body, payload);
    assert.ok(Buffer.concat([prefix, body]).equals(encodeRecord(fields)));
    const pages = image.subarray(0, 64 * PAGE);
    for (const compress of [false, true]) {
      const parts = snapshotChunkRecordParts(DB, at, 1, pages, false, compress, 5);
      assert.ok(Buffer.concat(parts).equals(snapshotChunkRecord(DB, at, 1, pages, false, compress, 5)));
      if (!compress) assert.equal(parts[1], pages, 'raw pages go out as they are');
    }
  });
});

describe('DirectFileWriter with an AlignedPool', () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-pool-'));
  after(() => fs.rmSync(scratch, { recursive: true, force: true }));

  for (const bypassCache of [true, false]) {
    test(`${bypassCache ? 'O_DIRECT' : 'page cache'}: pool memory is written as it is and given back once written`, async () => {
      const pool = new AlignedPool();
      const file = path.join(scratch, `pooled-${bypassCache}.db`);
      const writer = DirectFileWriter.create(file, bypassCache, pool);
      const first = pool.take(100, 100 + 65536);
      const pages = first.subarray(100);
      crypto.randomFillSync(pages);
      assert.ok(pool.holdsAligned(pages));
      await writer.write(pages, 0);
      // The write has not finished (or not started: a run may wait for more): its memory is not free yet.
      const second = pool.take(100, 100 + 65536);
      const overlaps = second.buffer === first.buffer && second.byteOffset < first.byteOffset + first.length && first.byteOffset < second.byteOffset + second.length;
      assert.ok(!overlaps, 'memory being written is not handed out');
      const more = second.subarray(100);
      crypto.randomFillSync(more);
      await writer.write(more, 65536);
      await writer.finish(2 * 65536);
      assert.ok(fs.readFileSync(file).equals(Buffer.concat([pages, more])));
      const again = pool.take(100, 100 + 65536);
      assert.ok(again.buffer === first.buffer || again.buffer === second.buffer, 'the memory came back once written');
      assert.ok(again.byteOffset < Math.max(first.byteOffset, second.byteOffset), 'and is filled again from the start');
    });
  }
});
