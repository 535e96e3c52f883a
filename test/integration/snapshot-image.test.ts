// The primary's snapshot image is read straight from its backing files under
// SQLite's locks (src/store/image-read.ts), while applications go on
// committing, checkpointing (WAL) and rewriting the database file (rollback
// modes). In every journal mode: a replica that meets a database for the
// first time in the middle of a stream of commits gets a snapshot read that
// way, applies it (moved into place: it had no copy), then the commits that
// follow, and ends byte-identical with the primary.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { JOURNAL_MODES, python, sleep, sqlite3 } from '../support/clients.js';
import { checkpoint, Cluster, countLines, mountedSha256, type ClusterNode } from '../support/cluster.js';

// Commits rows of 3000 random bytes for argv[3] seconds, each its own transaction; prints how many.
const WRITER_PY = `
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
con.execute("PRAGMA journal_mode=" + sys.argv[2])
end = time.time() + float(sys.argv[3])
n = 0
while time.time() < end:
    con.execute("INSERT INTO t(v) VALUES (randomblob(3000))")
    n += 1
print(n)
`;

describe('snapshot images read under SQLite locks', () => {
  let cluster: Cluster;
  let replica: ClusterNode;
  before(async () => {
    cluster = await Cluster.create(1);
    replica = cluster.replicas[0]!;
    await cluster.start(cluster.primary);
  });
  after(async () => {
    await cluster.destroy();
  });

  for (const mode of JOURNAL_MODES) {
    test(`${mode}: a replica new to the database gets a snapshot taken mid-stream of commits and ends byte-identical`, async () => {
      const db = `image-${mode}.db`;
      if (replica.proc) await cluster.stop(replica); // so the database is new to it when it comes back
      const file = path.join(cluster.primary.mnt, db);
      // ~3 MB to start with, so the image is more than a few pages.
      const setup = await sqlite3(file, `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);` +
        `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO t(v) SELECT randomblob(3000) FROM c;`);
      assert.equal(setup.code, 0, setup.stderr);
      const writing = python(WRITER_PY, [file, mode, '3']);
      await sleep(500);
      await cluster.start(replica); // the replica asks for the database at TXID 0 while the writer commits
      const w = await writing;
      assert.equal(w.code, 0, w.stderr);
      assert.ok(Number(w.stdout) > 10, `the writer committed only ${w.stdout.trim()} rows`);

      await checkpoint(cluster.primary, db);
      await cluster.waitInSync(db, 30_000, [replica]);
      assert.equal(mountedSha256(replica, db), mountedSha256(cluster.primary, db));
      const check = await sqlite3(path.join(replica.mnt, db), 'PRAGMA integrity_check;');
      assert.equal(check.stdout, 'ok\n');
      assert.equal(countLines(replica, new RegExp(`applied a snapshot from the primary db=${db.replace('.', '\\.')}`)), 1, replica.proc!.output);
      assert.match(cluster.primary.proc!.output, new RegExp(`sent a snapshot db=${db.replace('.', '\\.')} .*via=files`));
    });
  }
});
