// A database grown past 1 GiB crosses the lock page (the page holding
// SQLite's PENDING byte), which SQLite never writes: capture must skip it
// and replay must still reproduce the database byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { sqlite3, tempDirs } from '../support/clients.js';
import { MountProcess, writeConfig } from '../support/cli.js';
import { logicalBytes, logRecords, replay, sha256 } from '../support/txlog.js';
import { lockPageNumber } from '../../src/sqlite/dbheader.js';

test('a database past 1 GiB: the lock page is never captured, replay equals the database', { timeout: 300_000 }, async () => {
  const dirs = tempDirs();
  const node = await MountProcess.start(writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data }), dirs.mnt);
  try {
    const db = `${dirs.mnt}/big.db`;
    // 64 KiB pages keep the page count (and the test's time) small.
    const r = await sqlite3(db, `PRAGMA page_size=65536; PRAGMA journal_mode=wal; CREATE TABLE t(v); BEGIN; INSERT INTO t VALUES (zeroblob(600*1024*1024)); INSERT INTO t VALUES (zeroblob(600*1024*1024)); COMMIT; INSERT INTO t VALUES ('after');`);
    assert.equal(r.code, 0, r.stderr);
    const lockPage = lockPageNumber(65536);
    const records = logRecords(dirs.data, 'big.db');
    const big = records.find((tx) => tx.commitSize > lockPage);
    assert.ok(big, 'a transaction grew the database past the lock page');
    for (const tx of records) assert.ok(!tx.pages.some((p) => p.pgno === lockPage), 'no record holds the lock page');
    const replayed = replay(dirs.data, 'big.db');
    assert.ok(replayed.bytes.length > 1024 ** 3);
    assert.equal(sha256(replayed.bytes), sha256(logicalBytes(path.join(dirs.data, 'dbs', 'big.db'))));
    const check = await sqlite3(db, `SELECT count(*) FROM t; PRAGMA integrity_check;`);
    assert.equal(check.stdout, '3\nok\n');
  } finally {
    await node.stop();
    dirs.cleanup();
  }
});
