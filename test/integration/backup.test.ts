// S3 backup and point-in-time restore against s3rver, in wal and delete
// modes: a primary commits in rounds while its backup uploads; `litefs
// restore` to the latest TXID, to a chosen TXID and to a moment each give a
// database byte-identical (sha256) to the primary's at that point (in delete
// mode across a VACUUM to another page size). Then a
// candidate whose disk was wiped restores before it serves, and a new
// replica bootstraps from the backup and catches up from the stream.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, sqlite3, type JournalMode } from '../support/clients.js';
import { litefs } from '../support/cli.js';
import { Cluster, mountedSha256, readPos } from '../support/cluster.js';
import { startS3rver, type S3rverHandle } from '../support/s3.js';
import Database from 'better-sqlite3';
import { backupInfo, backupYaml, commitRows, fileSha256, recordPoint, restore, waitBackedUp, type Point } from '../support/backup.js';

const DB = 'backup.db';

describe('S3 backup and restore', () => {
  let s3: S3rverHandle;
  before(async () => {
    s3 = await startS3rver();
  });
  after(async () => {
    await s3.destroy();
  });

  for (const mode of ['wal', 'delete'] as JournalMode[]) {
    test(`${mode}: restore to the latest TXID, a chosen TXID and a moment equals the primary then`, async () => {
      const cluster = await Cluster.create(0, { extra: backupYaml(s3.endpoint, s3.bucket, `pitr-${mode}`) });
      const out = path.join(cluster.root, 'restored');
      try {
        const primary = cluster.primary;
        await cluster.start(primary);
        const r = await sqlite3(path.join(primary.mnt, DB), `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
        assert.equal(r.code, 0, r.stderr);
        await waitBackedUp(primary, DB);
        await sleep(1100); // listings date objects to the second
        const points: Point[] = [];
        for (let round = 0; round < 4; round++) {
          await commitRows(primary, DB, 5, `round${round}`);
          if (mode === 'delete' && round === 2) {
            // A VACUUM to another page size: the restores on either side of it must still be exact.
            const v = await sqlite3(path.join(primary.mnt, DB), 'PRAGMA page_size=8192; VACUUM;');
            assert.equal(v.code, 0, v.stderr);
          }
          await waitBackedUp(primary, DB);
          points.push(await recordPoint(primary, DB));
          await sleep(1100);
        }
        const latest = await restore(primary, DB, path.join(out, 'latest.db'));
        assert.equal(latest.code, 0, latest.stderr);
        assert.equal(fileSha256(path.join(out, 'latest.db')), points[3]!.sha256, 'latest restore equals the primary');
        assert.match(latest.stdout, new RegExp(`\\(${points[3]!.txid}\\)`));

        const byTxid = await restore(primary, DB, path.join(out, 'txid.db'), '-txid', String(points[1]!.txid));
        assert.equal(byTxid.code, 0, byTxid.stderr);
        assert.equal(fileSha256(path.join(out, 'txid.db')), points[1]!.sha256, `restore to TXID ${points[1]!.txid} equals the primary then`);

        const byTime = await restore(primary, DB, path.join(out, 'time.db'), '-timestamp', new Date(points[2]!.time).toISOString());
        assert.equal(byTime.code, 0, byTime.stderr);
        assert.equal(fileSha256(path.join(out, 'time.db')), points[2]!.sha256, 'restore to a moment equals the primary then');

        const again = await restore(primary, DB, path.join(out, 'latest.db'));
        assert.notEqual(again.code, 0, 'an existing output is never overwritten');
        assert.match(again.stderr, /exists/);
        const skip = await restore(primary, DB, path.join(out, 'latest.db'), '-if-db-not-exists');
        assert.equal(skip.code, 0, skip.stderr);

        const list = await litefs(['backups', '-config', primary.config, DB]);
        assert.equal(list.code, 0, list.stderr);
        assert.match(list.stdout, /snapshot/i);
        assert.ok(fs.readdirSync(out).every((f) => !f.includes('tmp')), 'no temporary files are left');
      } finally {
        await cluster.destroy();
      }
    });
  }

  test('under a steady stream of commits the backup uploads once per sync-interval, not after every few commits', async () => {
    const cluster = await Cluster.create(0, { extra: backupYaml(s3.endpoint, s3.bucket, 'steady', '  sync-interval: 500ms\n') });
    try {
      const primary = cluster.primary;
      await cluster.start(primary);
      const db = new Database(path.join(primary.mnt, DB));
      let commits = 0;
      try {
        db.pragma('journal_mode=wal');
        db.pragma('synchronous=normal');
        db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
        const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
        const seconds = 3;
        for (const end = Date.now() + seconds * 1000; Date.now() < end; commits++) insert.run(`row ${commits}`);
      } finally {
        db.close();
      }
      await waitBackedUp(primary, DB);
      const uploads = (await backupInfo(primary, DB))!.uploads;
      // 3 s at one pass per 500 ms, plus the first pass and the one that caught up after the stream.
      assert.ok(uploads <= 10, `${uploads} segment uploads for ${commits} commits in 3 s at sync-interval 500ms`);
      const point = await recordPoint(primary, DB);
      const out = path.join(cluster.root, 'steady.db');
      const r = await restore(primary, DB, out);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fileSha256(out), point.sha256, 'the restore equals the primary');
    } finally {
      await cluster.destroy();
    }
  });

  test('a candidate with an empty disk restores before it serves; a new replica bootstraps from the backup', async () => {
    const cluster = await Cluster.create(1, { extra: backupYaml(s3.endpoint, s3.bucket, 'bootstrap') });
    try {
      const [primary, replica] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
      await cluster.start(primary);
      const r = await sqlite3(path.join(primary.mnt, DB), `PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
      assert.equal(r.code, 0, r.stderr);
      await commitRows(primary, DB, 30, 'first');
      await waitBackedUp(primary, DB);
      const before = await recordPoint(primary, DB);
      await cluster.stop(primary);
      fs.rmSync(primary.data, { recursive: true, force: true });
      fs.mkdirSync(primary.data);

      await cluster.start(primary);
      assert.match(primary.proc!.output, /restored from the backup/);
      assert.equal(Number.parseInt(readPos(primary, DB).split('/')[0]!, 16), before.txid, 'the restored node is at the backup\'s TXID');
      assert.equal(mountedSha256(primary, DB), before.sha256, 'the restored database equals the one before the wipe');
      await commitRows(primary, DB, 5, 'after');

      await cluster.start(replica);
      assert.match(replica.proc!.output, /restored from the backup/, 'the new replica bootstraps from the backup');
      await cluster.waitInSync(DB);
      assert.doesNotMatch(replica.proc!.output, /applied a snapshot from the primary/, 'the primary sent only the newer segments');
      const count = await sqlite3(path.join(replica.mnt, DB), 'SELECT count(*) FROM t;');
      assert.equal(count.stdout, '35\n', count.stderr);
      assert.equal((await sqlite3(path.join(replica.mnt, DB), 'PRAGMA integrity_check;')).stdout, 'ok\n');
    } finally {
      await cluster.destroy();
    }
  });
});
