// Transaction capture on a single-node primary (`litefs mount`), in every
// journal mode: one transaction file per committed transaction, in order;
// none for rollbacks; the log replays to the database byte for byte.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { HeldConnection, JOURNAL_MODES, sqlite3, tempDirs } from '../support/clients.js';
import { MountProcess, writeConfig } from '../support/cli.js';
import { logicalBytes, logRecords, replay, sha256 } from '../support/txlog.js';
import Database from 'better-sqlite3';
import { parsePosition } from '../../src/txlog/checksum.js';

describe('transaction capture', () => {
  const dirs = tempDirs();
  let node: MountProcess;
  const dbDir = path.join(dirs.data, 'dbs');
  before(async () => {
    node = await MountProcess.start(writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data }), dirs.mnt);
  });
  after(async () => {
    await node.stop();
    dirs.cleanup();
  });

  const position = (db: string) => parsePosition(fs.readFileSync(`${dirs.mnt}/${db}-pos`, 'utf8').trim());

  for (const mode of JOURNAL_MODES) {
    test(`${mode}: one file per committed transaction, TXIDs contiguous, none for rollbacks; replay equals the database`, async () => {
      const db = `cap-${mode}.db`;
      const file = `${dirs.mnt}/${db}`;
      const setup = await sqlite3(file, `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);`);
      assert.equal(setup.code, 0, setup.stderr);
      const held = await HeldConnection.open(file); // keeps the WAL (if any) between statements
      try {
        await held.query(`PRAGMA journal_mode=${mode}`);
        const start = logRecords(dirs.data, db).length;
        assert.equal(position(db).txid, start);
        const snapshots: { txid: number; sha: string }[] = [];
        let committed = 0;
        for (let i = 1; i <= 30; i++) {
          const r = await held.query(`INSERT INTO t(v) VALUES (randomblob(${(i * 397) % 9000}))`);
          assert.equal(r.error, undefined);
          committed++;
          if (i % 7 === 0) {
            await held.query('BEGIN');
            await held.query('INSERT INTO t(v) VALUES (randomblob(5000))');
            await held.query('DELETE FROM t WHERE id % 3 = 0');
            await held.query('ROLLBACK');
          }
          if (i % 10 === 0) {
            await held.query('BEGIN');
            await held.query('UPDATE t SET v = randomblob(100) WHERE id % 2 = 0');
            await held.query('DELETE FROM t WHERE id % 5 = 0');
            await held.query('COMMIT');
            committed++;
          }
          if (i % 6 === 0) snapshots.push({ txid: position(db).txid, sha: sha256(logicalBytes(`${dbDir}/${db}`)) });
        }
        await held.query('VACUUM');
        committed++;
        snapshots.push({ txid: position(db).txid, sha: sha256(logicalBytes(`${dbDir}/${db}`)) });

        const records = logRecords(dirs.data, db);
        assert.equal(records.length - start, committed, 'one transaction file per commit');
        records.forEach((tx, i) => assert.deepEqual([tx.minTxid, tx.maxTxid], [i + 1, i + 1], 'TXIDs contiguous, in order'));
        assert.equal(position(db).txid, records.length);
        for (const s of snapshots) {
          const r = replay(dirs.data, db, s.txid);
          assert.equal(r.txid, s.txid);
          assert.equal(sha256(r.bytes), s.sha, `replay to TXID ${s.txid} reproduces the database`);
        }
      } finally {
        await held.close();
      }
      const check = await sqlite3(file, 'PRAGMA integrity_check;');
      assert.equal(check.stdout, 'ok\n');
    });
  }

  test('page sizes 1024 and 65536, several databases in one mount', async () => {
    for (const pageSize of [1024, 65536]) {
      for (const mode of ['wal', 'delete']) {
        const db = `ps${pageSize}-${mode}.db`;
        const r = await sqlite3(
          `${dirs.mnt}/${db}`,
          `PRAGMA page_size=${pageSize}; PRAGMA journal_mode=${mode}; CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(200000)); INSERT INTO t VALUES (randomblob(10)); UPDATE t SET v = randomblob(50000) WHERE rowid = 1;`,
        );
        assert.equal(r.code, 0, r.stderr);
        const replayed = replay(dirs.data, db);
        assert.equal(sha256(replayed.bytes), sha256(logicalBytes(`${dbDir}/${db}`)));
        assert.equal(replayed.bytes.readUInt16BE(16), pageSize === 65536 ? 1 : pageSize);
        assert.equal(position(db).txid, replayed.txid);
      }
    }
  });

  test('VACUUM that changes the page size in rollback mode', async () => {
    const db = 'repage.db';
    const file = `${dirs.mnt}/${db}`;
    assert.equal((await sqlite3(file, `PRAGMA journal_mode=delete; CREATE TABLE t(v); INSERT INTO t VALUES (randomblob(30000));`)).code, 0);
    const r = await sqlite3(file, `PRAGMA page_size=8192; VACUUM; PRAGMA page_size;`);
    assert.equal(r.stdout, '8192\n', r.stderr);
    assert.equal(sha256(replay(dirs.data, db).bytes), sha256(logicalBytes(`${dbDir}/${db}`)));
  });

  test('transactions larger than the page cache (pages spilled to the WAL and rewritten), in every mode', async () => {
    for (const mode of JOURNAL_MODES) {
      const db = `spill-${mode}.db`;
      const conn = new Database(`${dirs.mnt}/${db}`);
      try {
        conn.pragma(`journal_mode=${mode}`);
        conn.pragma('cache_size=10'); // a tiny cache: SQLite spills dirty pages mid-transaction
        conn.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
        for (let round = 0; round < 3; round++) {
          // In WAL mode SQLite overwrites a spilled frame in place and fixes the checksums after the commit frame.
          conn.transaction(() => {
            for (let i = 1; i <= 200; i++) conn.prepare('INSERT INTO t(v) VALUES (randomblob(1000))').run();
            conn.prepare('UPDATE t SET v = randomblob(900) WHERE id % 40 = 1').run();
          })();
        }
      } finally {
        conn.close();
      }
      const records = logRecords(dirs.data, db);
      assert.ok(records.length >= 4, `${mode}: CREATE and three transactions`);
      assert.equal(position(db).txid, records.length, `${mode}: every commit recorded before it returned`);
      const r = replay(dirs.data, db, records.length);
      assert.equal(sha256(r.bytes), sha256(logicalBytes(`${dbDir}/${db}`)), `${mode}: replay reproduces the database`);
    }
  });
});

// By default the -wal and -journal bypass the kernel's page cache; with
// fuse.cache-journals they are cached. Either way every commit is captured
// and a reader holding the database open sees each one at once.
describe('transaction capture with fuse.cache-journals', () => {
  const dirs = tempDirs();
  let node: MountProcess;
  before(async () => {
    node = await MountProcess.start(writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data, fuseExtra: '  cache-journals: true\n' }), dirs.mnt);
  });
  after(async () => {
    await node.stop();
    dirs.cleanup();
  });

  test('every mode: one TXID per commit, a held reader sees each, replay equals the database', async () => {
    for (const mode of JOURNAL_MODES) {
      const db = `cached-${mode}.db`;
      const file = `${dirs.mnt}/${db}`;
      const writer = new Database(file);
      writer.pragma(`journal_mode=${mode}`);
      writer.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
      const reader = await HeldConnection.open(file);
      try {
        const insert = writer.prepare('INSERT INTO t(v) VALUES (randomblob(?))');
        for (let i = 1; i <= 40; i++) {
          insert.run((i * 977) % 6000);
          const r = await reader.query('SELECT count(*), sum(length(v)) FROM t');
          assert.equal(r.error, undefined, `${mode}: ${r.error}`);
          assert.equal((r.rows as number[][])[0]![0], i, `${mode}: the reader sees commit ${i}`);
        }
      } finally {
        await reader.close();
        writer.close();
      }
      const records = logRecords(dirs.data, db);
      const pos = parsePosition(fs.readFileSync(`${file}-pos`, 'utf8').trim());
      assert.equal(pos.txid, records.length, `${mode}: the position is the last record`);
      assert.equal(records.length, mode === 'wal' ? 42 : 41, `${mode}: one record per commit (CREATE, ${mode === 'wal' ? 'the switch to WAL, ' : ''}40 inserts)`);
      assert.equal(sha256(replay(dirs.data, db).bytes), sha256(logicalBytes(path.join(dirs.data, 'dbs', db))), `${mode}: replay reproduces the database`);
      assert.equal((await sqlite3(file, 'PRAGMA integrity_check;')).stdout, 'ok\n');
    }
  });
});
