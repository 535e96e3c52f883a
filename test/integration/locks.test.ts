// The daemon's lock helper excludes SQLite the way SQLite excludes itself:
// a lock taken through the mount makes SQLite in another process get
// SQLITE_BUSY until released, and a waiting lock waits for SQLite's.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { useMountFixture } from '../support/fixture.js';
import { HeldConnection, JOURNAL_MODES, sleep, sqlite3 } from '../support/clients.js';
import { SHARED_FIRST, SHARED_SIZE, WAL_WRITE_LOCK } from '../../src/sqlite/shm.js';

describe('lock helper through the mount', () => {
  const ctx = useMountFixture();
  const dirs = ctx.dirs;

  for (const mode of JOURNAL_MODES) {
    const wal = mode === 'wal';
    // Rollback modes: the SHARED range of the db file shuts out readers.
    // WAL mode: the WRITE byte of the -shm shuts out writers.
    const what = wal ? 'writer' : 'reader';
    test(`${mode}: a daemon lock makes a SQLite ${what} get SQLITE_BUSY, then waits for one`, async () => {
      const db = `${dirs.mnt}/lock-${mode}.db`;
      const setup = await sqlite3(db, `PRAGMA journal_mode=${mode}; CREATE TABLE t(x); INSERT INTO t VALUES (1);`);
      assert.equal(setup.code, 0, setup.stderr);
      const client = await HeldConnection.open(db, 0); // busy timeout 0: BUSY at once
      await client.query(`PRAGMA journal_mode=${mode}`);
      const lockPath = wal ? `${db}-shm` : db;
      const [start, len] = wal ? [WAL_WRITE_LOCK, 1] : [SHARED_FIRST, SHARED_SIZE];
      const attempt = wal ? 'INSERT INTO t VALUES (2)' : 'SELECT count(*) FROM t';
      try {
        assert.equal(await ctx.fx.call({ cmd: 'lock', path: lockPath, kind: 'write', start, len, wait: false }), true);
        const busy = await client.query(attempt);
        assert.equal(busy.error, 'database is locked');
        if (wal) assert.deepEqual((await client.query('SELECT count(*) FROM t')).rows, [[1]], 'WAL readers go on');
        await ctx.fx.call({ cmd: 'unlockAll', path: lockPath });
        const ok = await client.query(attempt);
        assert.equal(ok.error, undefined);

        // Now SQLite holds its lock (a read transaction, or the WAL write lock).
        await client.query(wal ? 'BEGIN IMMEDIATE' : 'BEGIN');
        await client.query('SELECT count(*) FROM t');
        let acquired = false;
        const waiting = ctx.fx.call<boolean>({ cmd: 'lock', path: lockPath, kind: 'write', start, len, wait: true }).then((v) => (acquired = v));
        await sleep(300);
        assert.equal(acquired, false, 'the daemon waits while SQLite holds its lock');
        await client.query('COMMIT');
        assert.equal(await waiting, true);
        assert.equal((await client.query(attempt)).error, 'database is locked');
        await ctx.fx.call({ cmd: 'unlockAll', path: lockPath });
      } finally {
        await client.close();
      }
    });
  }
});
