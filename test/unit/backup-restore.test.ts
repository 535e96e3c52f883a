// Restore from a backup in a DirectoryObjectStore: a real database history
// (better-sqlite3 commits, each diffed page by page against the file before
// it into a transaction file) is written as snapshot and segment objects,
// and every restore must give the exact bytes the database had at that
// TXID. Then the failures: corrupt, truncated and missing objects, a
// broken checksum chain, a database SQLite rejects, and the CLI's checks
// that need no bucket.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { RestoreTarget } from '../../src/backup/catalog.js';
import { DirectoryObjectStore } from '../../src/backup/directory.js';
import { hex16 } from '../../src/backup/layout.js';
import { restoreDatabase, type RestoreResult } from '../../src/backup/restore.js';
import { describeBackups, parseRfc3339, parseTxid, renderBackups } from '../../src/cli/backup.js';
import { PageChecksums } from '../../src/txlog/checksum.js';
import { imageChecksum } from '../support/fake-primary.js';
import type { TransactionFile } from '../../src/txlog/txfile.js';
import { BackupBucket, buildHistory, DB, filler, flipByte, segmentFile, sha256, T0, uploadTime, type History } from '../support/backup-history.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const STEPS = [
  'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t(v);',
  "INSERT INTO t(v) VALUES ('one');",
  filler(300, 400), // grows by many pages
  "UPDATE t SET v = v || '!' WHERE id % 7 = 0;",
  "INSERT INTO t(v) VALUES ('five');",
  'DELETE FROM t WHERE id % 3 = 0;',
  "UPDATE t SET v = 'seven' WHERE id = 2;",
  filler(200, 900),
  "INSERT INTO t(v) VALUES ('nine');",
  'DELETE FROM t WHERE id > 50;',
  'VACUUM;', // shrinks the file: the commit size goes down
  "INSERT INTO t(v) VALUES ('twelve');",
  filler(50, 300),
  "UPDATE t SET v = 'fourteen' WHERE id = 1;",
];
const LAST = STEPS.length;

let scratch: string;
let history: History;

/** A bucket of its own for one test. */
const newBucket = (h = history): BackupBucket => BackupBucket.inside(scratch, h);

function outputPath(): string {
  return path.join(fs.mkdtempSync(path.join(scratch, 'out-')), 'sub', 'restored.db');
}

async function restore(bucket: BackupBucket, target: RestoreTarget, output = outputPath(), parallelism?: number): Promise<{ result: RestoreResult; output: string }> {
  const result = await restoreDatabase({ store: bucket.store, layout: bucket.layout, db: DB, output, target, ...(parallelism ? { parallelism } : {}) });
  return { result, output };
}

/** The restore fails with `pattern`, and leaves neither the output nor a temp file nor SQLite's side files. */
async function restoreFails(bucket: BackupBucket, target: RestoreTarget, pattern: RegExp): Promise<Error> {
  const output = outputPath();
  const err = await restoreDatabase({ store: bucket.store, layout: bucket.layout, db: DB, output, target }).then(
    () => assert.fail('restore succeeded'),
    (e: Error) => e,
  );
  assert.match(err.message, pattern);
  assert.doesNotMatch(err.message, /\n/);
  const dir = path.dirname(output);
  assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir) : [], []);
  return err;
}

before(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-restore-'));
  history = buildHistory(scratch, { wal: false, pageSize: 4096 }, STEPS);
});

after(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('restore', () => {
  test('the newest transaction: the exact bytes, position and counts', async () => {
    const b = newBucket();
    await b.standard();
    const seen: [number, number][] = [];
    const output = outputPath();
    const result = await restoreDatabase({ store: b.store, layout: b.layout, db: DB, output, target: { latest: true }, onProgress: (d, t) => seen.push([d, t]) });
    assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[LAST]!));
    const image = history.images[LAST]!;
    assert.deepEqual({ ...result, ms: 0 }, {
      db: DB, generation: b.gen, txid: LAST, checksum: imageChecksum(image, 4096), pageSize: 4096, commitSize: image.length / 4096,
      timestamp: history.times[LAST], bytes: image.length, objects: LAST, ms: 0,
    });
    const [done, total] = seen[seen.length - 1]!;
    assert.equal(done, total);
    assert.deepEqual(fs.readdirSync(path.dirname(output)), ['restored.db']);
  });

  test('every TXID, with one download at a time and with several', async () => {
    const b = newBucket();
    await b.standard();
    for (let txid = 1; txid <= LAST; txid++) {
      const { result, output } = await restore(b, { txid }, undefined, txid % 2 ? 1 : 3);
      assert.equal(result.txid, txid);
      assert.equal(result.objects, txid);
      assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[txid]!), `TXID ${txid}`);
    }
  });

  test('a timestamp: the last transaction committed by then', async () => {
    const b = newBucket();
    await b.standard();
    const { result, output } = await restore(b, { timestamp: history.times[6]! + 500 });
    assert.equal(result.txid, 6);
    assert.equal(result.timestamp, history.times[6]);
    assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[6]!));
    // Before the first transaction after the snapshot: the snapshot alone, timed by its upload
    // (which must be a second before the target: listings may round it down to the second).
    await restoreFails(b, { timestamp: uploadTime(1) + 999 }, /no generation reaches/);
    const early = await restore(b, { timestamp: uploadTime(1) + 1000 });
    assert.equal(early.result.txid, 1);
    assert.equal(early.result.timestamp, uploadTime(1));
    assert.equal(sha256(fs.readFileSync(early.output)), sha256(history.images[1]!));
    await restoreFails(b, { timestamp: T0 }, /no generation reaches 2024-01-01T00:00:00.000Z/);
  });

  test('the newest snapshot at or before the target is the one read', async () => {
    const b = newBucket();
    await b.standard();
    await b.snapshot(8);
    const old = b.layout.snapshotKey(DB, b.gen, 1);
    flipByte(b.path(old), 200); // only a restore that reads it fails
    const { result, output } = await restore(b, { txid: 10 });
    assert.equal(result.objects, 3); // snapshot 8, segments 9 and 10
    assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[10]!));
    const latest = await restore(b, { latest: true });
    assert.equal(sha256(fs.readFileSync(latest.output)), sha256(history.images[LAST]!));
    await restoreFails(b, { txid: 5 }, new RegExp(`${b.path(old)}: .*checksum mismatch`));
  });

  test('overlapping segments: a merged object and the small ones it replaces', async () => {
    const b = newBucket();
    await b.standard();
    await b.segment(2, 9);
    await b.segment(5, 12); // starts inside the first merged object: TXIDs 5..9 are skipped
    const { result, output } = await restore(b, { latest: true });
    assert.equal(result.objects, 1 + 2 + (LAST - 12));
    assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[LAST]!));
    const mid = await restore(b, { txid: 11 });
    assert.equal(sha256(fs.readFileSync(mid.output)), sha256(history.images[11]!));
  });

  test('a TXID inside a transaction file that spans several cannot be reached', async () => {
    const b = newBucket();
    await b.snapshot(1);
    const merged = mergeTransactions(history, 2, 4);
    await b.segment(2, 4, [segmentFile(merged)]);
    await restoreFails(b, { txid: 3 }, /TXID 3 lies inside it \(restore to 1 or 4\)/);
    const { output } = await restore(b, { txid: 4 });
    assert.equal(sha256(fs.readFileSync(output)), sha256(history.images[4]!));
  });

  test('a WAL-mode database leaves no -wal or -shm behind, and stale ones at the output go', async () => {
    const wal = buildHistory(scratch, { wal: true, pageSize: 1024 }, STEPS.slice(0, 6));
    const b = newBucket(wal);
    await b.standard();
    const output = outputPath();
    fs.mkdirSync(path.dirname(output), { recursive: true });
    for (const suffix of ['-wal', '-shm', '-journal']) fs.writeFileSync(output + suffix, 'stale');
    await restore(b, { latest: true }, output);
    const bytes = fs.readFileSync(output);
    assert.deepEqual([bytes[18], bytes[19]], [2, 2]);
    assert.equal(sha256(bytes), sha256(wal.images[6]!));
    assert.deepEqual(fs.readdirSync(path.dirname(output)), ['restored.db']);
  });
});

/** TXIDs min..max as one transaction file: the last image of each page, the first pre-apply checksum. */
function mergeTransactions(h: History, min: number, max: number): TransactionFile {
  const pages = new Map<number, Buffer>();
  for (let txid = min; txid <= max; txid++) for (const p of h.txs[txid]!.pages) pages.set(p.pgno, p.data);
  const last = h.txs[max]!;
  const kept = [...pages].filter(([pgno]) => pgno <= last.commitSize).sort((a, b) => a[0] - b[0]);
  return { ...last, minTxid: min, preApplyChecksum: h.txs[min]!.preApplyChecksum, pages: kept.map(([pgno, data]) => ({ pgno, data })) };
}

describe('restore failures', () => {
  test('a corrupt segment: the error names its key; no output, no temp file', async () => {
    const b = newBucket();
    await b.standard();
    const key = b.layout.segmentKey(DB, b.gen, 5, 5);
    flipByte(b.path(key), Math.floor(fs.statSync(b.path(key)).size / 2));
    const err = await restoreFails(b, { latest: true }, new RegExp(`^${b.path(key)}: `));
    assert.equal(err.name, 'BackupObjectError');
    await restore(b, { txid: 4 }); // the objects before it are fine
  });

  test('a truncated snapshot', async () => {
    const b = newBucket();
    await b.standard();
    const key = b.layout.snapshotKey(DB, b.gen, 1);
    fs.truncateSync(b.path(key), Math.floor(fs.statSync(b.path(key)).size / 2));
    const err = await restoreFails(b, { latest: true }, new RegExp(`^${b.path(key)}: .*truncated`));
    assert.equal(err.name, 'BackupObjectError');
  });

  test('a gap in the segments names the missing TXIDs', async () => {
    const b = newBucket();
    await b.standard();
    fs.rmSync(b.path(b.layout.segmentKey(DB, b.gen, 6, 6)));
    fs.rmSync(b.path(b.layout.segmentKey(DB, b.gen, 7, 7)));
    const err = await restoreFails(b, { latest: true }, new RegExp(`gap: no segment holds TXIDs ${hex16(6)}\\.\\.${hex16(7)}`));
    assert.equal(err.name, 'RestorePlanError');
    await restoreFails(b, { txid: 9 }, /gap/);
    await restore(b, { txid: 5 });
  });

  test('a transaction that does not chain: the key and the TXID', async () => {
    const b = newBucket();
    await b.standard();
    const wrong = { ...history.txs[7]!, preApplyChecksum: history.txs[7]!.preApplyChecksum ^ 1n };
    const key = await b.segment(7, 7, [segmentFile(wrong)]);
    await restoreFails(b, { latest: true }, new RegExp(`^${b.path(key)}: TXID ${hex16(7)} \\(7\\): pre-apply checksum`));
  });

  test('the end of the backup before a target TXID, and an empty or missing bucket', async () => {
    const b = newBucket();
    await b.standard();
    await restoreFails(b, { txid: LAST + 1 }, /no generation reaches TXID 15 \(.*ends at TXID 14\)/);
    const empty = newBucket();
    await restoreFails(empty, { latest: true }, /backup of app\.db: no generations found/);
    assert.throws(() => new DirectoryObjectStore(path.join(scratch, 'no-such-bucket')), { name: 'ObjectStoreError', message: /no such directory/ });
  });

  test('a database SQLite rejects, though every checksum chains', async () => {
    const b = newBucket();
    await b.standard();
    // TXID LAST+1 overwrites the table's root page with noise, with honest checksums.
    const sums = new PageChecksums(4096);
    const image = Buffer.from(history.images[LAST]!);
    sums.setPages(1, image);
    const pre = sums.checksum;
    const noise = Buffer.alloc(4096, 0x5a);
    sums.set(2, noise);
    const bad: TransactionFile = { ...history.txs[LAST]!, minTxid: LAST + 1, maxTxid: LAST + 1, preApplyChecksum: pre, postApplyChecksum: sums.checksum, pages: [{ pgno: 2, data: noise }] };
    await b.segment(LAST + 1, LAST + 1, [segmentFile(bad)]);
    const err = await restoreFails(b, { latest: true }, /^restore of app\.db: integrity check failed: (Tree|Page|.*malformed)/);
    assert.equal(err.name, 'RestoreError');
  });
});

describe('litefs backups', () => {
  test('lists generations, snapshots and segments with TXIDs, times and sizes', async () => {
    const b = newBucket();
    await b.snapshot(1);
    await b.segment(2, 3);
    const d = await describeBackups(b.store, b.layout, DB);
    assert.equal(d.generations.length, 1);
    assert.equal(d.generations[0]!.snapshots[0]!.txidHex, hex16(1));
    assert.deepEqual([d.generations[0]!.segments[0]!.minTxid, d.generations[0]!.segments[0]!.maxTxidHex], [2, hex16(3)]);
    assert.equal(d.generations[0]!.segments[0]!.lastModified, new Date(uploadTime(3)).toISOString());
    const text = renderBackups(d);
    assert.match(text, new RegExp(`generation ${b.gen} \\(started 2024-01-01T00:00:00.000Z\\): 1 snapshot\\(s\\), 1 segment\\(s\\)`));
    assert.match(text, new RegExp(`segment +TXID ${hex16(2)}-${hex16(3)} +\\(2-3\\) +2024-01-01T00:00:31.000Z +\\d+\\.\\d KiB`));
    assert.match(renderBackups(await describeBackups(b.store, b.layout, 'other.db')), /^no backup of other\.db at /);
  });
});

describe('litefs restore flags', () => {
  test('TXIDs and RFC 3339 times', () => {
    assert.equal(parseTxid('000000000000001f'), 31);
    assert.equal(parseTxid('31'), 31);
    for (const bad of ['0', '-1', '0x1f', '1f', '9007199254740993', '']) assert.equal(parseTxid(bad), undefined, bad);
    assert.equal(parseRfc3339('2024-01-02T03:04:05Z'), Date.UTC(2024, 0, 2, 3, 4, 5));
    assert.equal(parseRfc3339('2024-01-02T03:04:05.123456789+01:30'), Date.UTC(2024, 0, 2, 1, 34, 5, 123));
    for (const bad of ['2024-02-30T00:00:00Z', '2024-01-02T24:00:00Z', '2024-01-02 03:04:05', '2024-01-02', 'yesterday']) assert.equal(parseRfc3339(bad), undefined, bad);
  });

  test('the CLI: bad flags, no backup section, an existing output', async () => {
    const dir = fs.mkdtempSync(path.join(scratch, 'cli-'));
    const config = path.join(dir, 'litefs.yml');
    const lease = 'lease:\n  type: static\n  candidate: true\n  advertise-url: http://127.0.0.1:20202\n';
    fs.writeFileSync(config, `${lease}backup:\n  type: s3\n  bucket: b\n  endpoint: http://127.0.0.1:1\n`);
    const bare = path.join(dir, 'bare.yml');
    fs.writeFileSync(bare, lease);
    const existing = path.join(dir, 'existing.db');
    fs.writeFileSync(existing, 'keep');
    const litefs = (...args: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(process.execPath, [MAIN, ...args], { timeout: 10_000 }, (e, out, err) => resolve({ code: e ? Number(e.code) : 0, out, err }));
      });
    const cases: [string[], number, RegExp][] = [
      [['restore', '-o', existing, DB], 2, /-config PATH is required/],
      [['restore', '-config', config, DB], 2, /-o FILE is required/],
      [['restore', '-config', config, '-o', existing, '-txid', '5', '-timestamp', '2024-01-01T00:00:00Z', DB], 2, /not both/],
      [['restore', '-config', config, '-o', existing, '-txid', 'abc', DB], 2, /-txid "abc" is not a TXID/],
      [['restore', '-config', config, '-o', existing, '-timestamp', 'noon', DB], 2, /-timestamp "noon" is not an RFC 3339/],
      [['restore', '-config', config, '-o', existing, '-parallelism', '0', DB], 2, /-parallelism "0"/],
      [['restore', '-config', bare, '-o', existing, DB], 1, /no backup: section/],
      [['restore', '-config', config, '-o', existing, DB], 1, /existing\.db already exists; remove it first or pass -if-db-not-exists/],
    ];
    const results = await Promise.all(cases.map(([args]) => litefs(...args)));
    for (const [i, [args, code, pattern]] of cases.entries()) {
      const r = results[i]!;
      assert.equal(r.code, code, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, pattern);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
    }
    const skip = await litefs('restore', '-config', config, '-o', existing, '-if-db-not-exists', DB);
    assert.equal(skip.code, 0, skip.err);
    assert.match(skip.out, /already exists, skipping restore of app\.db/);
    assert.equal(fs.readFileSync(existing, 'utf8'), 'keep');
  });
});
