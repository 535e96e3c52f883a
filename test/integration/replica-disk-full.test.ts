// A replica whose data directory fills up (a small tmpfs) while the primary
// keeps committing: the primary never waits for it; the replica keeps
// serving the last state it applied whole, says why it stopped, and once
// space is freed it catches up by itself to byte-identical files. (In WAL
// mode a reader that opens while the disk is full may get "disk I/O
// error": SQLite grows the -shm itself when it is the first connection.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { checkpoint, Cluster, countLines, mountedSha256, readPos } from '../support/cluster.js';
import { python, run, sqlite3 } from '../support/clients.js';

/** Commits `n` rows of 300 random bytes, one transaction each. */
const WRITER = `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
c.execute('PRAGMA journal_mode=' + sys.argv[2])
c.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)')
for i in range(int(sys.argv[3])):
    c.execute('INSERT INTO t(v) VALUES (randomblob(300))')
print('done')
`;

describe('a replica whose disk fills up', () => {
  for (const mode of ['delete', 'wal'] as const) {
    test(`${mode}: the primary goes on; the replica serves its last whole state, then catches up once space is freed`, async () => {
      const cluster = await Cluster.create(1);
      const replica = cluster.replicas[0]!;
      assert.equal((await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', replica.data])).code, 0);
      try {
        await cluster.startAll();
        const db = 'grow.db';
        const w = await python(WRITER, [path.join(cluster.primary.mnt, db), mode, '2000']);
        assert.equal(w.stdout.trim(), 'done', `every commit on the primary succeeds: ${w.stderr}`);
        const primaryTxid = parseInt(readPos(cluster.primary, db).slice(0, 16), 16);
        assert.equal(primaryTxid, 2000 + (mode === 'wal' ? 2 : 1));

        // The replica stops short of the primary, says why, and what it serves is whole.
        const deadline = Date.now() + 20_000;
        while (countLines(replica, /ENOSPC|no space left/) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        assert.ok(countLines(replica, /ENOSPC|no space left/) > 0, `the replica reports the full disk:\n${replica.proc?.output}`);
        const stuck = parseInt(readPos(replica, db).slice(0, 16) || '0', 16);
        assert.ok(stuck < primaryTxid, `the replica is behind (${stuck} < ${primaryTxid})`);
        if (stuck > 0) {
          // What it serves is whole. Read from a copy of its file (a replica keeps its WAL empty): in WAL mode a
          // new reader may fail with "disk I/O error" while the disk is full, since SQLite must grow the -shm.
          const copy = path.join(cluster.root, 'replica-copy.db');
          fs.copyFileSync(path.join(replica.data, 'dbs', db), copy);
          const r = await sqlite3(copy, 'PRAGMA integrity_check;');
          assert.equal(r.stdout, 'ok\n', r.stderr);
          if (mode === 'delete') assert.equal((await sqlite3(path.join(replica.mnt, db), 'PRAGMA integrity_check;')).stdout, 'ok\n');
        }
        assert.equal(replica.proc?.child.exitCode, null, 'the replica is still running');

        // Room again: it catches up by itself.
        assert.equal((await run('mount', ['-o', 'remount,size=64m', replica.data])).code, 0);
        await cluster.waitInSync(db, 30_000);
        // The writer's close may not have checkpointed (the primary was taking snapshot images for the
        // replica at that moment, under SQLite's locks): the WAL's frames go into the file before comparing.
        if (mode === 'wal') await checkpoint(cluster.primary, db);
        assert.equal(mountedSha256(replica, db), mountedSha256(cluster.primary, db), `byte-identical: ${describeDifference(path.join(replica.mnt, db), path.join(cluster.primary.mnt, db))}`);
        const r = await sqlite3(path.join(replica.mnt, db), 'PRAGMA integrity_check; SELECT count(*) FROM t;');
        assert.equal(r.stdout, 'ok\n2000\n', r.stderr);
      } finally {
        for (const n of cluster.nodes) await cluster.stop(n).catch(() => undefined);
        await run('umount', ['-l', replica.data]); // before the cluster's directories go
        await cluster.destroy();
      }
    });
  }
});

/** Where two files differ: their sizes and the first differing page (4096 bytes), for a failure message. */
function describeDifference(a: string, b: string): string {
  const x = fs.readFileSync(a);
  const y = fs.readFileSync(b);
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  return `${a} has ${x.length} bytes, ${b} ${y.length}; first difference at byte ${i} (page ${Math.floor(i / 4096) + 1})`;
}
