// A snapshot read as it streams (src/replication/snapshot.ts): read into
// its two buffers in turn, it gives the records of the image held in
// memory; an image named by the database's position rather than by its
// checksum is checked as it goes; lz4 backs off over incompressible chunks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { RecordFlag, SnapshotAssembler, decodeSnapshotChunk, type StreamRecord } from '../../src/replication/records.js';
import { RecordReader } from '../../src/replication/record-reader.js';
import { streamSnapshotRecords, type SnapshotImage } from '../../src/replication/snapshot.js';
import { memoryImagePages, type ImagePages } from '../../src/store/image-read.js';
import { imageChecksum } from '../support/fake-primary.js';
import { rng } from '../support/random.js';

const PAGE = 512;
const DB = 'app.db';

/** A database image of `pages` pages of random bytes. */
function image(pages: number, seed: number): Buffer {
  const next = rng(seed);
  const bytes = Buffer.alloc(pages * PAGE);
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE(next() >>> 0, i);
  return bytes;
}

/** Pages read from memory through a copy into `into`, as the backing-file reader does, counting the reads and closes. */
function filePages(bytes: Buffer): ImagePages & { reads: number; closed: number } {
  const inMemory = memoryImagePages(bytes, PAGE);
  const pages = {
    pageSize: PAGE,
    commitSize: bytes.length / PAGE,
    reads: 0,
    closed: 0,
    async read(first: number, count: number, into?: Buffer) {
      pages.reads++;
      const view = await inMemory.read(first, count);
      if (!into) return Buffer.from(view);
      view.copy(into);
      return into.subarray(0, view.length);
    },
    async close() {
      pages.closed++;
    },
  };
  return pages;
}

async function collect(records: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const r of records) out.push(r);
  return out;
}

function parse(records: Buffer[]): StreamRecord[] {
  const reader = new RecordReader();
  reader.push(Buffer.concat(records));
  const out: StreamRecord[] = [];
  for (let r = reader.next(); r; r = reader.next()) out.push(r);
  return out;
}

describe('streamSnapshotRecords', () => {
  // Three chunks of 1 MiB (2048 pages) and a short one.
  const commitSize = 3 * 2048 + 300;
  const bytes = image(commitSize, 7);
  const place = { txid: 42, checksum: imageChecksum(bytes, PAGE), pageSize: PAGE, commitSize, timestamp: 1_700_000_000_000 };

  test('read into its two buffers, it sends the same records as the image held in memory, and they assemble into it', async () => {
    const pages = filePages(bytes);
    const streamed = await collect(streamSnapshotRecords(DB, { ...place, pages }, false));
    const held = await collect(streamSnapshotRecords(DB, { ...place, pages: memoryImagePages(bytes, PAGE) }, false));
    // Each record carries the time it was made; all else is the same.
    const timeless = (rs: Buffer[]) => parse(rs).map(({ timestamp: _t, ...r }) => ({ ...r, payload: Buffer.from(r.payload) }));
    assert.deepEqual(timeless(streamed), timeless(held));
    assert.equal(pages.reads, held.length);
    const records = parse(streamed);
    const assembler = new SnapshotAssembler(records[0]!);
    for (const r of records) assembler.add(r, decodeSnapshotChunk(r));
    assembler.finish();
    assert.equal(assembler.checksum, place.checksum);
  });

  test('an image named by position streams when its pages agree', async () => {
    const calls: bigint[] = [];
    const img: Omit<SnapshotImage, 'via'> = { ...place, pages: filePages(bytes), unverified: (actual) => calls.push(actual) };
    assert.equal((await collect(streamSnapshotRecords(DB, img, true))).length > 0, true);
    assert.deepEqual(calls, []);
  });

  test('an image named by position whose pages differ throws after the last record and says so', async () => {
    const changed = Buffer.from(bytes);
    changed[PAGE * 3 + 10] ^= 1;
    const calls: bigint[] = [];
    const img: Omit<SnapshotImage, 'via'> = { ...place, pages: filePages(changed), unverified: (actual) => calls.push(actual) };
    const got: Buffer[] = [];
    await assert.rejects(async () => {
      for await (const r of streamSnapshotRecords(DB, img, false)) got.push(r);
    }, /^Error: snapshot of app\.db: the pages sent have checksum [0-9a-f]{16}, not [0-9a-f]{16} of TXID 42$/);
    assert.deepEqual(calls, [imageChecksum(changed, PAGE)]);
    // The replica's own check refuses what went out.
    const records = parse(got);
    const assembler = new SnapshotAssembler(records[0]!);
    for (const r of records) assembler.add(r, decodeSnapshotChunk(r));
    assert.throws(() => assembler.finish(), /snapshot checksum [0-9a-f]{16} differs from its post-apply checksum/);
  });

  test('lz4 is tried less and less often over incompressible chunks, and on every chunk again once one shrinks', async () => {
    // 21 chunks of random bytes, then 20 of a repeated pattern.
    const perChunk = 2048;
    const mixed = Buffer.concat([crypto.randomBytes(21 * perChunk * PAGE), Buffer.alloc(20 * perChunk * PAGE, 'litefs ')]);
    const size = mixed.length / PAGE;
    const at = { txid: 42, checksum: imageChecksum(mixed, PAGE), pageSize: PAGE, commitSize: size, timestamp: 1_700_000_000_000 };
    const records = parse(await collect(streamSnapshotRecords(DB, { ...at, pages: memoryImagePages(mixed, PAGE) }, true)));
    const compressed = records.map((r, i) => ((r.flags & RecordFlag.lz4) !== 0 ? i : -1)).filter((i) => i >= 0);
    // Tried on chunk 0 (fails: 15 go raw), on 16 (fails: 31 go raw), on 48 and every one after it (they shrink).
    assert.deepEqual(compressed, Array.from({ length: records.length - 48 }, (_, k) => 48 + k));
    const assembler = new SnapshotAssembler(records[0]!);
    for (const r of records) assembler.add(r, decodeSnapshotChunk(r));
    assembler.finish();
  });
});
