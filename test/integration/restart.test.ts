// kill -9 of the process serving a mount leaves a dead mount; the next
// mount on the same directory clears it and works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { MountFixture } from '../support/fixture.js';
import { sqlite3, tempDirs } from '../support/clients.js';
import { mountPoints } from '../../src/fuse/mountpoint.js';

test('kill -9 of the mounting process, then mount again on the same dir', async () => {
  const dirs = tempDirs();
  try {
    const first = await MountFixture.start(dirs.mnt, dirs.data);
    const db = `${dirs.mnt}/k.db`;
    assert.equal((await sqlite3(db, `PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);`)).code, 0);
    await first.kill9();
    assert.throws(() => fs.statSync(dirs.mnt), /ENOTCONN|ECONNABORTED/, 'the mount is dead');

    const second = await MountFixture.start(dirs.mnt, dirs.data);
    try {
      assert.equal(second.clearedDeadMount, true);
      const r = await sqlite3(db, `INSERT INTO t VALUES (2); SELECT count(*) FROM t; PRAGMA integrity_check;`);
      assert.equal(r.stdout, '2\nok\n', r.stderr);
    } finally {
      await second.stop();
    }
    assert.equal(mountPoints().has(dirs.mnt), false, 'nothing left mounted');
  } finally {
    dirs.cleanup();
  }
});

test('SIGTERM unmounts cleanly', async () => {
  const dirs = tempDirs();
  try {
    const fx = await MountFixture.start(dirs.mnt, dirs.data);
    assert.equal(mountPoints().has(dirs.mnt), true);
    const exited = new Promise<number | null>((r) => fx.child.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))));
    fx.child.kill('SIGTERM');
    await exited;
    assert.equal(mountPoints().has(dirs.mnt), false, 'unmounted on SIGTERM');
    assert.equal(fs.statSync(dirs.mnt).isDirectory(), true);
  } finally {
    dirs.cleanup();
  }
});
