// Compaction and retention of a backup in a DirectoryObjectStore, over a
// real history of 600 single-transaction commits (one segment object each):
// complete 256-TXID windows become one object holding the same transaction
// files, the small ones go, and every restore still gives the exact bytes
// the database had. A window with a hole is left alone, a corrupt object
// stops compaction before anything is deleted, and retention removes only
// what no kept snapshot needs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { readCatalog, segmentChain, type Generation, type RestoreTarget } from '../../src/backup/catalog.js';
import { compactWindows, type CompactionContext } from '../../src/backup/compaction.js';
import { hex16, newGenerationId, parseObjectName } from '../../src/backup/layout.js';
import { decodeSegmentObject } from '../../src/backup/objects.js';
import { restoreDatabase } from '../../src/backup/restore.js';
import { enforceBackupRetention } from '../../src/backup/retention.js';
import { BackupBucket, buildHistory, DB, filler, flipByte, segmentFile, sha256, T0, type History } from '../support/backup-history.js';

/** Mostly one-row inserts (a page or two each), with a few bulk inserts, deletes and a VACUUM to vary the commit size. */
function steps(n: number): string[] {
  const out = ['CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);'];
  for (let i = 2; i <= n; i++) {
    if (i % 150 === 0) out.push(filler(40, 300));
    else if (i % 150 === 75) out.push('DELETE FROM t WHERE id % 4 = 0;');
    else if (i === 333) out.push('VACUUM;');
    else out.push(`INSERT INTO t(v) VALUES ('row ${i}');`);
  }
  return out;
}
const LAST = 600;

let scratch: string;
let history: History;

before(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-compaction-'));
  history = buildHistory(scratch, { wal: false, pageSize: 1024 }, steps(LAST));
});

after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const newBucket = (gen?: string): BackupBucket => BackupBucket.inside(scratch, history, gen);
const context = (b: BackupBucket): CompactionContext => ({ objects: b.store, layout: b.layout, db: DB, generation: b.gen });
const segmentKey = (b: BackupBucket, min: number, max: number): string => b.layout.segmentKey(DB, b.gen, min, max);

async function generation(b: BackupBucket): Promise<Generation> {
  const gen = (await readCatalog(b.store, b.layout, DB)).find((g) => g.id === b.gen);
  assert.ok(gen, `generation ${b.gen} is listed`);
  return gen;
}

/** The bucket's objects, with their sizes and times: what "changes nothing" compares. */
const listing = (b: BackupBucket) => b.store.list('');

/** [min, max] of each segment object. */
const ranges = (gen: Generation): [number, number][] => gen.segments.map((s) => [s.minTxid, s.maxTxid]);
const singles = (from: number, to: number): [number, number][] => Array.from({ length: to - from + 1 }, (_, i) => [from + i, from + i]);

/** Restores to `target` and checks the file is byte for byte the image at `txid`; returns the objects read. */
async function restoresTo(b: BackupBucket, target: RestoreTarget, txid: number): Promise<number> {
  const output = path.join(fs.mkdtempSync(path.join(scratch, 'out-')), 'restored.db');
  const result = await restoreDatabase({ store: b.store, layout: b.layout, db: DB, output, target });
  assert.equal(result.txid, txid);
  assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[txid]!), `restore to ${JSON.stringify(target)}`);
  fs.rmSync(path.dirname(output), { recursive: true });
  return result.objects;
}

async function restoreFails(b: BackupBucket, target: RestoreTarget, pattern: RegExp): Promise<void> {
  const output = path.join(fs.mkdtempSync(path.join(scratch, 'out-')), 'restored.db');
  await assert.rejects(restoreDatabase({ store: b.store, layout: b.layout, db: DB, output, target }), pattern);
}

describe('compaction', () => {
  test('two full 256-windows become one object each; the rest stay; restores are exact', async () => {
    const b = newBucket();
    await b.standard(1);
    const { segments, merged } = await compactWindows(context(b), (await generation(b)).segments, 0, LAST);
    assert.equal(merged, 2);
    const gen = await generation(b);
    // The snapshot is at TXID 1, so the first window's objects start at 2.
    assert.deepEqual(ranges(gen), [[2, 256], [257, 512], ...singles(513, LAST)]);
    assert.deepEqual(segments.map((s) => [s.key, s.minTxid, s.maxTxid, s.size]), gen.segments.map((s) => [s.key, s.minTxid, s.maxTxid, s.size]), 'the returned list is the bucket\'s');
    for (let txid = 2; txid <= 512; txid++) assert.ok(!fs.existsSync(b.path(segmentKey(b, txid, txid))), `segment ${txid} deleted`);

    // Byte for byte the same transaction files, in order.
    for (const [min, max] of [[2, 256], [257, 512]] as const) {
      const key = segmentKey(b, min, max);
      const files = decodeSegmentObject(key, DB, parseObjectName(key)!, await b.store.get(key));
      assert.deepEqual(files.map((f) => f.tx.minTxid), singles(min, max).map(([t]) => t));
      assert.ok(Buffer.concat(files.map((f) => f.bytes)).equals(Buffer.concat(history.files.slice(min, max + 1).map((f) => f.bytes))));
    }

    const chain = segmentChain(gen, 1);
    assert.equal(chain.gapAt, undefined);
    assert.equal(chain.endTxid, LAST);
    assert.equal(chain.segments.length, 2 + (LAST - 512));

    assert.equal(await restoresTo(b, { latest: true }, LAST), 1 + chain.segments.length);
    for (const txid of [1, 2, 150, 256, 257, 333, 400, 512, 513]) await restoresTo(b, { txid }, txid);
  });

  test('with a later snapshot, the first window\'s object starts after it', async () => {
    const b = newBucket();
    await b.standard(100);
    assert.equal((await compactWindows(context(b), (await generation(b)).segments, 0, LAST)).merged, 2);
    assert.deepEqual(ranges(await generation(b)), [[101, 256], [257, 512], ...singles(513, LAST)]);
    await restoresTo(b, { latest: true }, LAST);
    await restoresTo(b, { txid: 200 }, 200);
  });

  test('windows merge once complete, a pass at a time; a second pass changes nothing', async () => {
    const b = newBucket();
    await b.standard(1);
    const ctx = context(b);
    let segments = (await generation(b)).segments;
    // Each pass merges the windows ending in (from, to], as the uploader calls it after each upload.
    const passes: [number, number, number][] = [[0, 255, 0], [255, 300, 1], [300, 511, 0], [511, LAST, 1]];
    for (const [from, to, expected] of passes) {
      const r = await compactWindows(ctx, segments, from, to);
      assert.equal(r.merged, expected, `pass (${from}, ${to}]`);
      segments = r.segments;
    }
    const state = await listing(b);
    assert.deepEqual(ranges(await generation(b)), [[2, 256], [257, 512], ...singles(513, LAST)]);

    const again = await compactWindows(ctx, segments, 0, LAST);
    assert.equal(again.merged, 0);
    assert.deepEqual(again.segments, segments);
    const fresh = await compactWindows(ctx, (await generation(b)).segments, 0, LAST);
    assert.equal(fresh.merged, 0);
    assert.deepEqual(await listing(b), state);
  });

  test('a merged object left beside its small ones (a crash before the deletes) is finished by the next pass', async () => {
    const b = newBucket();
    await b.standard(1);
    await b.segment(2, 256);
    await restoresTo(b, { txid: 300 }, 300); // overlapping objects are a consistent bucket
    assert.equal((await compactWindows(context(b), (await generation(b)).segments, 0, LAST)).merged, 2);
    assert.deepEqual(ranges(await generation(b)), [[2, 256], [257, 512], ...singles(513, LAST)]);
    await restoresTo(b, { latest: true }, LAST);
  });

  // An object overlapping small ones and reaching past them: a re-upload after a restart (3..256 over 3),
  // or a merged object whose small ones were only partly deleted (S3 deletes a batch in no set order).
  const overlaps: [string, [number, number], number[]][] = [
    ['a longer object starting inside the small ones', [3, 256], singles(4, 256).map(([t]) => t)],
    ['a merged object beside the first of its small ones', [2, 256], singles(150, 256).map(([t]) => t)],
  ];
  for (const [what, [min, max], deleted] of overlaps) {
    test(`${what}: nothing it holds is lost`, async () => {
      const b = newBucket();
      await b.standard(1);
      await b.segment(min, max);
      await b.store.delete(deleted.map((txid) => segmentKey(b, txid, txid)));
      await compactWindows(context(b), (await generation(b)).segments, 0, LAST);
      assert.deepEqual(ranges(await generation(b)), [[2, 256], [257, 512], ...singles(513, LAST)]);
      await restoresTo(b, { latest: true }, LAST);
      await restoresTo(b, { txid: 200 }, 200);
    });
  }

  test('a window with a hole is left alone, and restore reports the gap', async () => {
    const b = newBucket();
    await b.standard(1);
    await b.store.delete([segmentKey(b, 100, 100)]);
    assert.equal((await compactWindows(context(b), (await generation(b)).segments, 0, LAST)).merged, 1);
    assert.deepEqual(ranges(await generation(b)), [...singles(2, 99), ...singles(101, 256), [257, 512], ...singles(513, LAST)]);
    await restoreFails(b, { latest: true }, new RegExp(`gap: no segment holds TXIDs ${hex16(100)}\\.\\.${hex16(100)} \\(next is ${segmentKey(b, 101, 101)}\\)`));
    await restoreFails(b, { txid: 300 }, /gap/);
    await restoresTo(b, { txid: 99 }, 99);
  });

  // Each corruption is in the first window, so nothing at all may change.
  const corruptions: [string, [number, number], (b: BackupBucket, key: string) => Promise<unknown>, RegExp][] = [
    ['a flipped byte', [150, 150], async (b, key) => flipByte(b.path(key), Math.floor(fs.statSync(b.path(key)).size / 2)), /checksum|CRC|corrupt/i],
    ['a truncated object', [150, 150], async (b, key) => fs.truncateSync(b.path(key), 100), /truncated/],
    ['an object whose transaction does not chain', [150, 150], (b) => {
      const tx = history.txs[150]!;
      return b.segment(150, 150, [segmentFile({ ...tx, preApplyChecksum: tx.preApplyChecksum ^ 1n })]);
    }, /pre-apply checksum/],
    // Its small ones are still there: they must not go on the strength of its name.
    ['a merged object left beside its small ones', [2, 256], async (b, key) => {
      await b.segment(2, 256);
      flipByte(b.path(key), Math.floor(fs.statSync(b.path(key)).size / 2));
    }, /checksum|CRC|corrupt/i],
  ];
  for (const [what, [min, max], corrupt, pattern] of corruptions) {
    test(`${what} inside a window: an error naming its key, and nothing deleted`, async () => {
      const b = newBucket();
      await b.standard(1);
      const key = segmentKey(b, min, max);
      await corrupt(b, key);
      const state = await listing(b);
      const err = await compactWindows(context(b), (await generation(b)).segments, 0, LAST).then(() => assert.fail('compaction succeeded'), (e: Error) => e);
      assert.ok(err.message.startsWith(`${b.store.label}/${key}: `), err.message);
      assert.match(err.message, pattern);
      assert.equal(err.name, 'BackupObjectError');
      assert.deepEqual(await listing(b), state);
    });
  }
});

describe('a page size change (VACUUM to 4096-byte pages at TXID 200)', () => {
  const RESIZED = 200;
  const END = 520;
  let resized: History;
  before(() => {
    const dir = fs.mkdtempSync(path.join(scratch, 'resized-'));
    resized = buildHistory(dir, { wal: false, pageSize: 1024 }, steps(END).map((sql, i) => (i + 1 === RESIZED ? 'PRAGMA page_size = 4096; VACUUM;' : sql)));
    assert.deepEqual([resized.pageSizes[RESIZED - 1], resized.pageSizes[RESIZED]], [1024, 4096]);
  });

  test('the window it falls in stays as it is, later ones merge, and restores on either side are exact', async () => {
    const b = BackupBucket.inside(scratch, resized);
    await b.standard(1);
    assert.equal((await compactWindows(context(b), (await generation(b)).segments, 0, END)).merged, 1);
    assert.deepEqual(ranges(await generation(b)), [...singles(2, 256), [257, 512], ...singles(513, END)]);
    for (const txid of [RESIZED - 1, RESIZED, RESIZED + 1, 300, END]) {
      const output = path.join(fs.mkdtempSync(path.join(scratch, 'out-')), 'restored.db');
      const result = await restoreDatabase({ store: b.store, layout: b.layout, db: DB, output, target: { txid } });
      assert.deepEqual([result.txid, result.pageSize], [txid, resized.pageSizes[txid]]);
      assert.equal(sha256(fs.readFileSync(output)), sha256(resized.images[txid]!), `restore to TXID ${txid}`);
    }
  });

  test('a transaction changing the page size without every page is refused, naming its object', async () => {
    const b = BackupBucket.inside(scratch, resized);
    await b.standard(RESIZED - 1);
    const tx = resized.txs[RESIZED]!;
    await b.segment(RESIZED, RESIZED, [segmentFile({ ...tx, pages: tx.pages.slice(1) })]);
    const output = path.join(fs.mkdtempSync(path.join(scratch, 'out-')), 'restored.db');
    await assert.rejects(restoreDatabase({ store: b.store, layout: b.layout, db: DB, output, target: { latest: true } }),
      new RegExp(`${segmentKey(b, RESIZED, RESIZED)}: .*changes the page size from 1024 to 4096 but holds ${tx.pages.length - 1} of ${tx.pages.length} pages`));
    assert.ok(!fs.existsSync(output));
  });
});

describe('retention', () => {
  const HOUR = 3_600_000;
  const NOW = T0 + 30 * 24 * HOUR;
  const RETENTION = 24 * HOUR;
  const CUTOFF = NOW - RETENTION;
  /** Upload times before and after the cutoff, in whole seconds (a directory store's mtime keeps them exact). */
  const old = (txid: number) => CUTOFF - 10 * HOUR + txid * 1000;
  const recent = (txid: number) => CUTOFF + HOUR + txid * 1000;

  /** A snapshot at each of `snapshots` and one segment per TXID up to `last`; TXIDs up to `oldUpTo` were uploaded before the cutoff. */
  async function layOut(b: BackupBucket, snapshots: number[], last: number, oldUpTo: number): Promise<void> {
    const at = (txid: number) => (txid <= oldUpTo ? old(txid) : recent(txid));
    for (const txid of snapshots) await b.snapshot(txid, at(txid));
    for (let txid = 2; txid <= last; txid++) await b.segment(txid, txid, undefined, at(txid));
  }

  const snapshotTxids = (gen: Generation) => gen.snapshots.map((s) => s.txid);

  test('old generations go whole; the current one keeps the newest snapshot before the cutoff and what follows', async () => {
    const gone = newBucket(newGenerationId(T0));
    await layOut(gone, [1], 10, 10);
    await gone.put(`${gone.layout.generationPrefix(DB, gone.gen)}notes.txt`, Buffer.from('left by hand'), old(10));
    const live = gone.generation(newGenerationId(T0 + HOUR)); // not current, but written to inside the window
    await layOut(live, [1, 5, 8], 12, 7);
    const current = gone.generation(newGenerationId(T0 + 2 * HOUR));
    await layOut(current, [1, 20, 40], 60, 30);
    await current.segment(15, 25, undefined, old(25)); // straddles the kept snapshot: stays

    const deleted = await enforceBackupRetention(current.store, current.layout, DB, current.gen, RETENTION, NOW);
    assert.equal(deleted, (1 + 9 + 1) + (1 + 4) + (1 + 19));
    const gens = await readCatalog(current.store, current.layout, DB);
    assert.deepEqual(gens.map((g) => g.id), [live.gen, current.gen]);
    const [liveGen, currentGen] = gens as [Generation, Generation];
    assert.deepEqual(snapshotTxids(liveGen), [5, 8]);
    assert.deepEqual(ranges(liveGen), singles(6, 12));
    assert.deepEqual(snapshotTxids(currentGen), [20, 40]);
    assert.deepEqual(ranges(currentGen), [[15, 25], ...singles(21, 60)]);

    await restoresTo(current, { latest: true }, 60);
    await restoresTo(current, { txid: 21 }, 21);
    assert.equal(await enforceBackupRetention(current.store, current.layout, DB, current.gen, RETENTION, NOW), 0, 'a second run deletes nothing');
  });

  test('the newest snapshot is kept even when everything is older than the window', async () => {
    const b = newBucket();
    await layOut(b, [1, 10, 20], 30, 30);
    assert.equal(await enforceBackupRetention(b.store, b.layout, DB, b.gen, RETENTION, NOW), 2 + 19);
    const gen = await generation(b);
    assert.deepEqual(snapshotTxids(gen), [20]);
    assert.deepEqual(ranges(gen), singles(21, 30));
    await restoresTo(b, { latest: true }, 30);
  });

  test('nothing goes when every snapshot is inside the window', async () => {
    const b = newBucket();
    await layOut(b, [1, 10], 20, 0);
    const state = await listing(b);
    assert.equal(await enforceBackupRetention(b.store, b.layout, DB, b.gen, RETENTION, NOW), 0);
    assert.deepEqual(await listing(b), state);
  });
});
