// Replicas that stop and start again: from their position when the
// primary's log still covers it, from a snapshot when it does not; a late
// replica gets a snapshot; a replica whose database was changed underneath
// notices by its checksum and is re-synced; one killed between logging
// transactions and writing their pages completes them from its log.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, sqlite3, type JournalMode } from '../support/clients.js';
import { checkpoint, Cluster, countLines, mountedSha256, readPos, type ClusterNode } from '../support/cluster.js';

const SNAPSHOT_APPLIED = /applied a snapshot from the primary/;

async function commit(node: ClusterNode, db: string, mode: JournalMode, rows: number): Promise<void> {
  for (let i = 0; i < rows; i++) {
    const r = await sqlite3(path.join(node.mnt, db), `PRAGMA journal_mode=${mode}; INSERT INTO t(v) VALUES (hex(randomblob(${100 + i * 10})));`);
    assert.equal(r.code, 0, r.stderr);
  }
}

async function create(node: ClusterNode, db: string, mode: JournalMode): Promise<void> {
  const r = await sqlite3(path.join(node.mnt, db), `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
  assert.equal(r.code, 0, r.stderr);
}

async function assertSame(cluster: Cluster, db: string, replica: ClusterNode): Promise<void> {
  await checkpoint(cluster.primary, db);
  await cluster.waitInSync(db, 20_000, [replica]);
  assert.equal(mountedSha256(replica, db), mountedSha256(cluster.primary, db));
  const check = await sqlite3(path.join(replica.mnt, db), 'PRAGMA integrity_check;');
  assert.equal(check.stdout, 'ok\n');
}

/** A primary and one replica, `db` created in `mode` with 5 commits and the same on both; then `fn`. */
async function withSyncedReplica(mode: JournalMode, db: string, fn: (cluster: Cluster, replica: ClusterNode, db: string) => Promise<void>): Promise<void> {
  const cluster = await Cluster.create(1);
  try {
    await cluster.startAll();
    const replica = cluster.replicas[0]!;
    await create(cluster.primary, db, mode);
    await commit(cluster.primary, db, mode, 5);
    await assertSame(cluster, db, replica);
    await fn(cluster, replica, db);
  } finally {
    await cluster.destroy();
  }
}

describe('replication: replica restarts', () => {
  for (const mode of ['wal', 'delete'] as const) {
    test(`${mode}: after SIGTERM and after kill -9 a replica catches up from its position, without a snapshot`, () =>
      withSyncedReplica(mode, 'restart.db', async (cluster, replica, db) => {
        for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
          await cluster.stop(replica, signal);
          await commit(cluster.primary, db, mode, 10);
          const proc = await cluster.start(replica);
          await assertSame(cluster, db, replica);
          assert.equal(countLines(replica, SNAPSHOT_APPLIED), 0, `no snapshot after ${signal}:\n${proc.output}`);
          if (signal === 'SIGKILL') assert.match(proc.output, /cleared a dead mount/);
        }
      }));
  }

  for (const mode of ['wal', 'delete'] as const) {
    test(`${mode}: a replica killed after logging transactions but before writing their pages writes them at restart, without a snapshot`, () =>
      withSyncedReplica(mode, 'redo.db', async (cluster, replica, db) => {
        const backing = path.join(replica.data, 'dbs', db);
        const marker = path.join(replica.data, 'txlog', db, 'applied');
        const before = { file: fs.readFileSync(backing), marker: fs.readFileSync(marker) };
        assert.equal(Number(before.marker.readBigUInt64BE(0)), Number.parseInt(readPos(replica, db).split('/')[0]!, 16), 'the marker notes the last applied TXID');

        await commit(cluster.primary, db, mode, 12);
        await assertSame(cluster, db, replica);
        // As if killed with the last 12 transactions logged (one batch) and none of their pages written.
        await cluster.stop(replica, 'SIGKILL');
        fs.writeFileSync(backing, before.file);
        fs.writeFileSync(marker, before.marker);

        const proc = await cluster.start(replica);
        await assertSame(cluster, db, replica);
        assert.match(proc.output, /wrote the pages of the last logged transactions again/);
        assert.equal(countLines(replica, SNAPSHOT_APPLIED), 0, proc.output);
      }));
  }

  test('wal: a replica stopped with its database in WAL mode but no -wal (killed between an apply\'s pages and its -wal) makes one at restart; readers read', () =>
    withSyncedReplica('wal', 'nowal.db', async (cluster, replica, db) => {
      await cluster.stop(replica, 'SIGKILL');
      fs.rmSync(path.join(replica.data, 'dbs', `${db}-wal`));
      await cluster.start(replica);
      await cluster.waitInSync(db, 20_000, [replica]);
      const look = await sqlite3(path.join(replica.mnt, db), 'SELECT count(*) FROM t;');
      assert.equal(look.stdout, '5\n', look.stderr);
      assert.ok(fs.existsSync(path.join(replica.mnt, `${db}-wal`)));
    }));

  test('a replica catching up over a page size change (VACUUM) between other transactions ends byte-identical, without a snapshot', () =>
    withSyncedReplica('delete', 'pagesize.db', async (cluster, replica, db) => {
      await cluster.stop(replica);
      // Arrives in one stream record on reconnect: commits, the page size change, more commits.
      await commit(cluster.primary, db, 'delete', 3);
      const vacuum = await sqlite3(path.join(cluster.primary.mnt, db), 'PRAGMA page_size=8192; VACUUM;');
      assert.equal(vacuum.code, 0, vacuum.stderr);
      await commit(cluster.primary, db, 'delete', 3);
      const proc = await cluster.start(replica);
      await assertSame(cluster, db, replica);
      assert.equal((await sqlite3(path.join(replica.mnt, db), 'PRAGMA page_size;')).stdout, '8192\n');
      assert.equal(countLines(replica, SNAPSHOT_APPLIED), 0, proc.output);
    }));

  test('a replica behind the primary log\'s retention gets a snapshot; so does one that joins late', async () => {
    // Segments start every 300 ms and are kept for 1 s: a replica away for 3 s is behind.
    const cluster = await Cluster.create(2, { dataExtra: '  retention: 1s\n  retention-monitor-interval: 300ms\n' });
    try {
      const [first, late] = cluster.replicas as [ClusterNode, ClusterNode];
      await cluster.start(cluster.primary);
      await cluster.start(first);
      const db = 'retained.db';
      await create(cluster.primary, db, 'wal');
      await commit(cluster.primary, db, 'wal', 3);
      await assertSame(cluster, db, first);
      const snapshotsBefore = countLines(first, SNAPSHOT_APPLIED);

      await cluster.stop(first);
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        await commit(cluster.primary, db, 'wal', 1);
        await sleep(100);
      }
      await cluster.start(first);
      await assertSame(cluster, db, first);
      assert.equal(countLines(first, SNAPSHOT_APPLIED), 1, first.proc!.output);
      assert.ok(snapshotsBefore <= 1);
      assert.match(cluster.primary.proc!.output, /sent a snapshot .*reason="log no longer covers the replica"/);

      // ~12 MiB, so the late replica's snapshot spans many chunks: lz4 ones (zeros), then raw ones (random),
      // which both sides send and write from buffers they reuse from chunk to chunk.
      const big = 'big.db';
      await create(cluster.primary, big, 'wal');
      const fill = await sqlite3(path.join(cluster.primary.mnt, big),
        'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) INSERT INTO t(v) SELECT CASE WHEN x <= 700 THEN hex(zeroblob(3000)) ELSE hex(randomblob(3000)) END FROM c;');
      assert.equal(fill.code, 0, fill.stderr);

      await cluster.start(late);
      await assertSame(cluster, db, late);
      await assertSame(cluster, big, late);
      assert.equal(countLines(late, SNAPSHOT_APPLIED), 2, late.proc!.output);
      assert.doesNotMatch(late.proc!.output, /replication stream ended/, 'each snapshot got through the first time');
      assert.match(cluster.primary.proc!.output, /sent a snapshot .*reason="new replica"/);
    } finally {
      await cluster.destroy();
    }
  });

  test('a replica whose snapshot\'s log base was lost (a power cut before the base was made durable, which a replica does in the background) is re-synced by a snapshot', async () => {
    const cluster = await Cluster.create(1);
    try {
      const replica = cluster.replicas[0]!;
      await cluster.start(cluster.primary);
      const db = 'based.db';
      await create(cluster.primary, db, 'wal');
      await commit(cluster.primary, db, 'wal', 5);
      await cluster.start(replica); // joins late: its database comes as a snapshot, its log starts at the base
      await assertSame(cluster, db, replica);
      assert.equal(countLines(replica, SNAPSHOT_APPLIED), 1, replica.proc!.output);
      await cluster.stop(replica);

      // What a power cut can leave of a base written but not yet synced: an empty file, and no segments.
      const logDir = path.join(replica.data, 'txlog', db);
      assert.ok(fs.statSync(path.join(logDir, 'base')).size > 0, 'the snapshot left a base');
      fs.truncateSync(path.join(logDir, 'base'), 0);
      for (const name of fs.readdirSync(logDir)) if (name !== 'base') fs.rmSync(path.join(logDir, name), { recursive: true });

      const proc = await cluster.start(replica);
      await assertSame(cluster, db, replica);
      assert.match(proc.output, /database has no transaction log; it will be replaced by a snapshot/);
      assert.equal(countLines(replica, SNAPSHOT_APPLIED), 1, proc.output);
    } finally {
      await cluster.destroy();
    }
  });

  for (const mode of ['wal', 'delete'] as const) {
    test(`${mode}: a replica whose database was changed underneath notices the checksum and is re-synced`, async () => {
      const cluster = await Cluster.create(1);
      try {
        await cluster.startAll();
        const replica = cluster.replicas[0]!;
        const db = 'altered.db';
        await create(cluster.primary, db, mode);
        await commit(cluster.primary, db, mode, 20);
        // The last transaction leaves page 2 (t's root) alone, so writing it
        // again at restart cannot hide the change below.
        const last = await sqlite3(path.join(cluster.primary.mnt, db), `PRAGMA journal_mode=${mode}; CREATE TABLE u(x); INSERT INTO u VALUES (1);`);
        assert.equal(last.code, 0, last.stderr);
        await assertSame(cluster, db, replica);

        await cluster.stop(replica);
        const backing = path.join(replica.data, 'dbs', db);
        const fd = fs.openSync(backing, 'r+');
        const byte = Buffer.alloc(1);
        fs.readSync(fd, byte, 0, 1, 4096 + 3000); // inside page 2's content
        fs.writeSync(fd, Buffer.from([byte[0]! ^ 0x55]), 0, 1, 4096 + 3000);
        fs.closeSync(fd);

        const proc = await cluster.start(replica);
        await assertSame(cluster, db, replica);
        assert.match(proc.output, /database does not match its transaction log/);
        assert.equal(countLines(replica, SNAPSHOT_APPLIED), 1, proc.output);
        assert.match(cluster.primary.proc!.output, /sent a snapshot .*reason="new replica"/);
      } finally {
        await cluster.destroy();
      }
    });
  }
});
