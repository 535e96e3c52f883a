// `litefs mount` as a user runs it: bad input gets one clear line and a
// non-zero exit with nothing left mounted; kill -9 then mount again works.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { mountPoints } from '../../src/fuse/mountpoint.js';
import { run, sqlite3, tempDirs } from '../support/clients.js';
import { LITEFS_BIN, litefs, MountProcess, writeConfig } from '../support/cli.js';

/** Non-zero exit; the error is the last line, one line, no stack trace. */
function assertOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trim().split('\n');
  const last = lines[lines.length - 1]!;
  assert.match(last, /^litefs[ :]/);
  assert.match(last, pattern);
  assert.ok(!lines.some((l) => /^\s+at /.test(l)), `no stack trace: ${r.stderr}`);
}

describe('litefs mount: bad input', () => {
  const dirs = tempDirs();
  after(() => dirs.cleanup());

  test('a missing mount directory', async () => {
    const missing = path.join(dirs.root, 'nope');
    const cfg = writeConfig(dirs.root, { mnt: missing, data: dirs.data });
    assertOneLineError(await litefs(['mount', '-config', cfg]), /mount directory does not exist/);
    assert.equal(mountPoints().has(missing), false);
  });

  test('the data directory equal to, or inside, the mount directory', async () => {
    for (const data of [dirs.mnt, path.join(dirs.mnt, 'data')]) {
      const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data });
      const r = await litefs(['mount', '-config', cfg]);
      assertOneLineError(r, /must not|must be different|inside/);
      assert.equal(mountPoints().has(dirs.mnt), false);
    }
  });

  test('no /dev/fuse', async () => {
    // A private mount namespace whose /dev lacks the fuse device.
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
    const script = `mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && exec "${process.execPath}" "${LITEFS_BIN}" mount -config "${cfg}"`;
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
    assertOneLineError(r, /\/dev\/fuse is missing/);
    assert.equal(mountPoints().has(dirs.mnt), false);
  });

  test('mounting twice on the same directory', async () => {
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
    const first = await MountProcess.start(cfg, dirs.mnt);
    try {
      const other = path.join(dirs.root, 'data2');
      fs.mkdirSync(other);
      const cfg2 = writeConfig(dirs.root, { mnt: dirs.mnt, data: other, port: 1 });
      assertOneLineError(await litefs(['mount', '-config', cfg2]), /already a mount point/);
      // The first mount still serves.
      assert.equal((await sqlite3(`${dirs.mnt}/ok.db`, 'CREATE TABLE t(x); SELECT 1;')).stdout, '1\n');
    } finally {
      assert.equal(await first.stop(), 0);
    }
    assert.equal(mountPoints().has(dirs.mnt), false);
  });

  test('a config with an unknown key or a wrong type', async () => {
    const bad = path.join(dirs.root, 'bad.yml');
    fs.writeFileSync(bad, `fuse:\n  dri: /x\nlease:\n  type: static\n`);
    assertOneLineError(await litefs(['mount', '-config', bad]), /bad\.yml.*fuse\.dri/);
    fs.writeFileSync(bad, `fuse:\n  dir: "${dirs.mnt}"\ndata:\n  dir: "${dirs.data}"\n  retention: lots\nlease:\n  type: static\n`);
    assertOneLineError(await litefs(['mount', '-config', bad]), /data\.retention/);
    assert.equal(mountPoints().has(dirs.mnt), false);
  });

  test('an unknown flag', async () => {
    assertOneLineError(await litefs(['mount', '-confg', 'x']), /unknown flag -confg/);
  });
});

test('litefs mount: kill -9, then mount again on the same directory', async () => {
  const dirs = tempDirs();
  try {
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
    const first = await MountProcess.start(cfg, dirs.mnt);
    assert.equal((await sqlite3(`${dirs.mnt}/k.db`, 'CREATE TABLE t(x); INSERT INTO t VALUES (1);')).code, 0);
    await first.stop('SIGKILL');
    assert.throws(() => fs.statSync(dirs.mnt), /ENOTCONN|ECONNABORTED/);
    const second = await MountProcess.start(cfg, dirs.mnt);
    try {
      assert.match(second.output, /cleared a dead mount/);
      const r = await sqlite3(`${dirs.mnt}/k.db`, 'SELECT count(*) FROM t; PRAGMA integrity_check;');
      assert.equal(r.stdout, '1\nok\n');
    } finally {
      assert.equal(await second.stop(), 0);
    }
    assert.equal(mountPoints().has(dirs.mnt), false);
  } finally {
    dirs.cleanup();
  }
});
