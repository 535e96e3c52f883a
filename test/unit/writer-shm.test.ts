// DatabaseWriter.betweenTransactions (src/store/apply.ts) in WAL mode after
// the -shm it had opened was unlinked: the last SQLite connection to close
// a WAL database deletes its -wal and -shm, and the next connection makes a
// new -shm. The writer must wait for that connection's write transaction,
// not lock the unlinked file's bytes and go on. Run on a plain directory:
// the locks are the same open-file-description locks as through the mount.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DatabaseWriter } from '../../src/store/apply.js';
import { fileControl } from '../../src/fuse/index.js';
import { createLogger } from '../../src/log.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-writer-shm-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('after the -shm is unlinked and made again, betweenTransactions waits for the new one\'s writer', async () => {
  const file = path.join(dir, 'w.db');
  const first = new Database(file);
  first.pragma('journal_mode=wal');
  first.exec('CREATE TABLE t(x); INSERT INTO t VALUES (1);');
  const writer = new DatabaseWriter('w.db', file, file, createLogger({ format: 'text', timestamp: true, debug: false }, fs.createWriteStream('/dev/null')), fileControl);
  try {
    assert.equal(await writer.betweenTransactions(true, 1000, () => {}), true, 'no writer: the lock is had at once');
    const inodeBefore = fs.statSync(file + '-shm').ino;
    first.close(); // the last connection: SQLite checkpoints and deletes the -wal and -shm
    assert.equal(fs.existsSync(file + '-shm'), false, 'SQLite unlinked the -shm');

    const second = new Database(file);
    try {
      second.exec('BEGIN IMMEDIATE; INSERT INTO t VALUES (2);'); // holds WRITE on a new -shm
      assert.notEqual(fs.statSync(file + '-shm').ino, inodeBefore);
      let ran = false;
      const started = Date.now();
      const locked = await writer.betweenTransactions(true, 300, () => (ran = true));
      assert.equal(locked, false, 'the writer of the new -shm holds WRITE: betweenTransactions gives up waiting');
      assert.ok(Date.now() - started >= 250, 'it waited');
      assert.equal(ran, true);
      second.exec('COMMIT');
      assert.equal(await writer.betweenTransactions(true, 1000, () => {}), true);
    } finally {
      second.close();
    }
  } finally {
    await writer.close();
  }
});
