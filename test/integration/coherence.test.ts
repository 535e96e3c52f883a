// Kernel cache coherence: a connection held open through the mount keeps
// seeing cached pages after the backing file changes, until invalidate().
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { useMountFixture } from '../support/fixture.js';
import { HeldConnection, sqlite3 } from '../support/clients.js';
import { resetWalIndexHeader, SHM_HEADER_SIZE } from '../../src/sqlite/shm.js';

describe('coherence through invalidate', () => {
  const ctx = useMountFixture();
  const dirs = ctx.dirs;

  for (const mode of ['delete', 'wal'] as const) {
    test(`${mode}: a held connection sees changed backing pages after invalidate, not before`, async () => {
      const name = `coh-${mode}.db`;
      const db = `${dirs.mnt}/${name}`;
      const backing = `${dirs.data}/${name}`;
      const setup = await sqlite3(
        db,
        `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) INSERT INTO t SELECT i, hex(randomblob(200)) FROM n;`,
      );
      assert.equal(setup.code, 0, setup.stderr);
      const held = await HeldConnection.open(db);
      try {
        assert.deepEqual((await held.query('SELECT count(*) FROM t')).rows, [[100]]);

        // A newer version of the database, made beside the mount, copied over
        // the backing file in place (what a replica applying pages does).
        const scratch = path.join(dirs.root, `next-${name}`);
        fs.copyFileSync(backing, scratch);
        const next = new Database(scratch);
        next.exec(`WITH RECURSIVE n(i) AS (SELECT 101 UNION ALL SELECT i+1 FROM n WHERE i < 150) INSERT INTO t SELECT i, hex(randomblob(200)) FROM n`);
        const nPage = (next.pragma('page_count', { simple: true }) as number);
        next.close();
        fs.writeFileSync(backing, fs.readFileSync(scratch));

        // WAL readers trust their cache while the wal-index header is unchanged,
        // so the header is rewritten through the mount (the page cache they
        // map) after the pages change. A reader that sees the new header
        // re-reads pages at once: invalidation must come before the header.
        const bumpWalIndex = () => {
          if (mode !== 'wal') return;
          const shmPath = `${db}-shm`;
          const current = fs.readFileSync(shmPath).subarray(0, SHM_HEADER_SIZE);
          const fd = fs.openSync(shmPath, 'r+');
          fs.writeSync(fd, resetWalIndexHeader(current, nPage, 4096), 0, SHM_HEADER_SIZE, 0);
          fs.closeSync(fd);
        };

        bumpWalIndex();
        assert.deepEqual((await held.query('SELECT count(*) FROM t')).rows, [[100]], 'stale without invalidate: the kernel cache still serves old pages');
        await ctx.fx.call({ cmd: 'invalidate', name });
        bumpWalIndex();
        assert.deepEqual((await held.query('SELECT count(*) FROM t')).rows, [[150]]);
        assert.deepEqual((await held.query('PRAGMA integrity_check')).rows, [['ok']]);
      } finally {
        await held.close();
      }
    });
  }
});
