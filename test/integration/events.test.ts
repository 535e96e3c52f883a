// Decision points reach JavaScript with file, offset and length: one commit
// frame per committed WAL transaction, one journal invalidation per
// committed rollback-mode transaction, none for rolled-back ones; the
// dirty-page record; a handler's errno fails the operation.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { familyOptions, useMountFixture } from '../support/fixture.js';
import { HeldConnection, JOURNAL_MODES, sqlite3, sleep } from '../support/clients.js';
import { readWalFrames } from '../../src/sqlite/wal.js';

describe('events at decision points', () => {
  const ctx = useMountFixture();
  const dirs = ctx.dirs;

  for (const mode of JOURNAL_MODES) {
    test(`${mode}: one commit event per committed transaction, none for rollbacks`, async () => {
      const name = `ev-${mode}.db`;
      const db = `${dirs.mnt}/${name}`;
      const setup = await sqlite3(db, `PRAGMA journal_mode=${mode}; CREATE TABLE t(x);`);
      assert.equal(setup.code, 0, setup.stderr);
      await sleep(50); // events are delivered over IPC after the op returned
      ctx.fx.events.length = 0;
      // In WAL mode, keep a second connection open so the WAL survives for inspection.
      const holder = mode === 'wal' ? await HeldConnection.open(db) : undefined;
      await holder?.query('SELECT count(*) FROM t');
      const committed = 7;
      // journal_mode is per connection except for WAL, which the file keeps.
      let sql = `PRAGMA journal_mode=${mode}; PRAGMA wal_autocheckpoint=0;\n`;
      for (let i = 0; i < committed; i++) {
        sql += `INSERT INTO t VALUES (${i});\n`;
        sql += `BEGIN; INSERT INTO t VALUES (randomblob(100)); ROLLBACK;\n`;
      }
      sql += `BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); COMMIT;\n`;
      const r = await sqlite3(db, sql);
      assert.equal(r.code, 0, r.stderr);
      await sleep(50);
      const total = committed + 1;
      if (mode === 'wal') {
        const commits = ctx.fx.eventsOf('walCommit', `${name}-wal`);
        assert.equal(commits.length, total);
        assert.equal(ctx.fx.eventsOf('journalInvalidated').length, 0);
        const wal = fs.readFileSync(`${dirs.data}/${name}-wal`);
        const scan = readWalFrames(wal);
        assert.equal(scan.transactions.length, total);
        commits.forEach((ev, i) => {
          const tx = scan.transactions[i]!;
          const last = tx.frames[tx.frames.length - 1]!;
          assert.equal(ev.pageSize, 4096);
          assert.equal(ev.length, 24 + 4096);
          assert.equal(ev.offset, 32 + last.index * (24 + 4096), 'offset of the commit frame');
          assert.equal(ev.commitSize, tx.commitSize);
        });
        await holder?.close();
      } else {
        const inval = ctx.fx.eventsOf('journalInvalidated', `${name}-journal`);
        assert.equal(inval.length, total);
        const reason = { delete: 'unlink', truncate: 'truncate', persist: 'zeroed' }[mode];
        assert.ok(inval.every((e) => e.reason === reason), JSON.stringify(inval));
        assert.equal(ctx.fx.eventsOf('walCommit').length, 0);
      }
    });
  }

  test('dirty pages written to a database since the last take', async () => {
    const name = 'dirty.db';
    const db = `${dirs.mnt}/${name}`;
    const r = await sqlite3(db, `PRAGMA journal_mode=delete; CREATE TABLE a(x); CREATE TABLE b(x); INSERT INTO a VALUES (randomblob(3000));`);
    assert.equal(r.code, 0, r.stderr);
    await ctx.fx.call({ cmd: 'takeDirty', name });
    const u = await sqlite3(db, `INSERT INTO b VALUES (1);`);
    assert.equal(u.code, 0, u.stderr);
    const pages = await ctx.fx.call<number[]>({ cmd: 'takeDirty', name });
    // page 1 (change counter) and b's root page (3: a is 2), nothing of a
    assert.deepEqual([...pages].sort((x, y) => x - y), [1, 3]);
    assert.deepEqual(await ctx.fx.call<number[]>({ cmd: 'takeDirty', name }), []);
  });

  test('an errno from the handler fails the operation (WAL commit with walWait -> SQLite I/O error)', async () => {
    const db = `${dirs.mnt}/fail.db`;
    await ctx.fx.call({ cmd: 'setFile', name: 'fail.db-wal', opts: { ...familyOptions('fail.db-wal'), walWait: true } });
    assert.equal((await sqlite3(db, `PRAGMA journal_mode=wal; CREATE TABLE t(x);`)).code, 0);
    // The kernel retries a failed buffered write (seen: once), so handlers
    // must be idempotent and a persistent failure is what reaches SQLite.
    await ctx.fx.call({ cmd: 'failNext', type: 'walCommit', errno: 'EIO', times: 5 });
    const r = await sqlite3(db, `INSERT INTO t VALUES (1);`);
    await ctx.fx.call({ cmd: 'clearFailures' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /disk I\/O error/);
    const after = await sqlite3(db, `INSERT INTO t VALUES (2); SELECT count(*) FROM t; PRAGMA integrity_check;`);
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /ok\n$/);
  });

  test('create can be refused by JavaScript', async () => {
    await ctx.fx.call({ cmd: 'failNext', type: 'create', errno: 'EROFS' });
    const r = await sqlite3(`${dirs.mnt}/refused.db`, `CREATE TABLE t(x);`);
    assert.notEqual(r.code, 0);
    assert.equal(fs.existsSync(`${dirs.data}/refused.db`), false);
  });
});

describe('WAL commit notices', () => {
  const ctx = useMountFixture();
  const { dirs } = ctx;

  test('a commit does not wait for its notice; a WAL truncation and a virtual file read wait until notices are handled', async () => {
    const name = 'notice.db';
    const db = `${dirs.mnt}/${name}`;
    // No events of the database file (fsync, truncate): they would wait for the notices anyway.
    await ctx.fx.call({ cmd: 'setFile', name, opts: { dirtyPages: true, pageSize: 4096 } });
    await ctx.fx.call({ cmd: 'setFile', name: `${name}-wal`, opts: { events: true, wal: true } });
    assert.equal((await sqlite3(db, `PRAGMA journal_mode=wal; CREATE TABLE t(x);`)).code, 0);
    const holder = await HeldConnection.open(db); // keeps the WAL from being deleted at each close
    try {
      await holder.query('SELECT count(*) FROM t');
      await ctx.fx.call({ cmd: 'stallNotices', ms: 150, counter: 'handled' });
      ctx.fx.events.length = 0;

      // Truncation: each stalled handler must still find its commit frame in the WAL.
      const r = await sqlite3(db, `PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (3); PRAGMA wal_checkpoint(TRUNCATE);`);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(ctx.fx.eventsOf('walCommit').every((e) => !e.waiting));
      assert.equal(fs.statSync(`${dirs.data}/${name}-wal`).size, 0, 'the checkpoint truncated the WAL');
      assert.equal(fs.readFileSync(`${dirs.mnt}/handled`, 'utf8'), '3');
      const checked = ctx.fx.eventsOf('noticeChecked', `${name}-wal`);
      assert.equal(checked.length, 3);
      assert.ok(checked.every((c) => c.frameIntact), JSON.stringify(checked));

      // A virtual file read right after a commit sees the handled notice.
      for (let i = 4; i <= 6; i++) {
        assert.equal((await sqlite3(db, `INSERT INTO t VALUES (${i});`)).code, 0);
        assert.equal(fs.readFileSync(`${dirs.mnt}/handled`, 'utf8'), String(i));
      }
    } finally {
      await holder.close();
    }
  });
});
