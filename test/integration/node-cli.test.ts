// `litefs mount` as a node: its startup log lines, exec'd commands,
// import/export through the CLI, strict-verify, retention.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, sqlite3, tempDirs } from '../support/clients.js';
import { litefs, LITEFS_BIN, MountProcess, writeConfig } from '../support/cli.js';
import { logicalBytes, segmentFiles, sha256 } from '../support/txlog.js';
import { mountPoints } from '../../src/fuse/mountpoint.js';
import { spawn } from 'node:child_process';

function httpPort(output: string): number {
  const m = /http server listening addr=http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
  assert.ok(m, output);
  return Number(m[1]);
}

describe('litefs mount: a single-node primary', () => {
  test('logs config, mount, data dir, role and HTTP address at start', async () => {
    const dirs = tempDirs();
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
    const node = await MountProcess.start(cfg, dirs.mnt);
    try {
      // start() returns once HTTP listens; the role is logged when the lease is taken, just after.
      for (let i = 0; i < 100 && !/role role=primary/.test(node.output); i++) await sleep(50);
      for (const re of [/config file read path=\S+litefs-mnt\.yml/, /mounted dir=\S+\/mnt/, /data directory dir=\S+\/data/, /role role=primary/, /http server listening addr=http:\/\/127\.0\.0\.1:\d+/]) {
        assert.match(node.output, re);
      }
    } finally {
      await node.stop();
      dirs.cleanup();
    }
  });

  test('exec: commands run after the mount is ready; litefs exits with the app, unmounted', async () => {
    const dirs = tempDirs();
    const marker = path.join(dirs.root, 'marker');
    const extra = `exec:\n  - cmd: "sqlite3 ${dirs.mnt}/app.db 'CREATE TABLE t(x); INSERT INTO t VALUES (7);'"\n  - cmd: "sqlite3 ${dirs.mnt}/app.db 'SELECT x FROM t' > ${marker}; exit 3"\n`;
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data, extra });
    const child = spawn(process.execPath, [LITEFS_BIN, 'mount', '-config', cfg], { stdio: 'ignore' });
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      assert.equal(code, 3, 'litefs exits with the application’s code');
      assert.equal(fs.readFileSync(marker, 'utf8'), '7\n');
      assert.equal(mountPoints().has(dirs.mnt), false);
    } finally {
      dirs.cleanup();
    }
  });

  test('mount -- CMD runs CMD as the application; log.format json prints JSON lines', async () => {
    const dirs = tempDirs();
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data, extra: 'log:\n  format: json\n' });
    const child = spawn(process.execPath, [LITEFS_BIN, 'mount', '-config', cfg, '--', 'sqlite3', `${dirs.mnt}/cmd.db`, 'CREATE TABLE t(x); INSERT INTO t VALUES (1);'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      assert.equal(code, 0, stderr);
      const lines = stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: number });
      assert.ok(lines.some((l) => l.msg === 'mounted'));
      assert.ok(lines.some((l) => l.msg === 'application exited'));
      assert.equal(fs.existsSync(path.join(dirs.data, 'txlog', 'cmd.db')), true, 'the command ran through the mount');
    } finally {
      dirs.cleanup();
    }
  });

  test('import and export through the CLI; import of a file that is not SQLite fails clearly', async () => {
    const dirs = tempDirs();
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
    const node = await MountProcess.start(cfg, dirs.mnt);
    try {
      const url = `http://127.0.0.1:${httpPort(node.output)}`;
      const src = path.join(dirs.root, 'src.db');
      assert.equal((await sqlite3(src, 'CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) INSERT INTO t SELECT i FROM n;')).code, 0);
      const imp = await litefs(['import', '-url', url, '-name', 'imported.db', src]);
      assert.equal(imp.code, 0, imp.stderr);
      assert.match(imp.stdout, /imported .* into imported\.db \(TXID 1\)/);
      assert.equal((await sqlite3(`${dirs.mnt}/imported.db`, 'SELECT count(*), sum(x) FROM t; PRAGMA integrity_check;')).stdout, '5000|12502500\nok\n');

      const bad = path.join(dirs.root, 'bad.db');
      fs.writeFileSync(bad, 'this is not a database'.repeat(100));
      const r = await litefs(['import', '-url', url, '-name', 'imported.db', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr.trim(), /^litefs import: import: the upload is not a SQLite database/);
      assert.equal((await sqlite3(`${dirs.mnt}/imported.db`, 'SELECT count(*) FROM t;')).stdout, '5000\n', 'nothing changed');

      const out = path.join(dirs.root, 'out.db');
      const exp = await litefs(['export', '-url', url, '-name', 'imported.db', out]);
      assert.equal(exp.code, 0, exp.stderr);
      assert.equal(sha256(fs.readFileSync(out)), sha256(logicalBytes(path.join(dirs.data, 'dbs', 'imported.db'))));
      const missing = await litefs(['export', '-url', url, '-name', 'nope.db', out]);
      assert.match(missing.stderr, /database "nope.db" not found/);
      const down = await litefs(['export', '-url', 'http://127.0.0.1:1', '-name', 'x', out]);
      assert.match(down.stderr.trim(), /^litefs export: cannot reach http:\/\/127\.0\.0\.1:1/);
    } finally {
      await node.stop();
      dirs.cleanup();
    }
  });

  test('strict-verify: a page changed underneath fails the next commit with an I/O error and a clear log line', async () => {
    const dirs = tempDirs();
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data, extra: 'strict-verify: true\n' });
    const node = await MountProcess.start(cfg, dirs.mnt);
    try {
      const db = `${dirs.mnt}/sv.db`;
      assert.equal((await sqlite3(db, 'PRAGMA journal_mode=delete; CREATE TABLE t(x); CREATE TABLE u(y); INSERT INTO t VALUES (1);')).code, 0);
      // Corrupt table u's page in the backing file, behind SQLite's back.
      const backing = path.join(dirs.data, 'dbs', 'sv.db');
      const fd = fs.openSync(backing, 'r+');
      fs.writeSync(fd, Buffer.from('garbage'), 0, 7, 3 * 4096 - 100);
      fs.closeSync(fd);
      const r = await sqlite3(db, 'INSERT INTO t VALUES (2);');
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /disk I\/O error/);
      assert.match(node.output, /strict-verify: checksum \w+ of the files differs from position/);
    } finally {
      await node.stop();
      dirs.cleanup();
    }
  });

  test('retention: old log segments are removed, the newest is kept', async () => {
    const dirs = tempDirs();
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data, dataExtra: '  retention: 1s\n  retention-monitor-interval: 300ms\n' });
    const node = await MountProcess.start(cfg, dirs.mnt);
    try {
      const db = `${dirs.mnt}/ret.db`;
      assert.equal((await sqlite3(db, 'CREATE TABLE t(x);')).code, 0);
      for (let i = 0; i < 6; i++) {
        assert.equal((await sqlite3(db, `INSERT INTO t VALUES (${i});`)).code, 0);
        await sleep(400);
      }
      await sleep(1500);
      const segments = segmentFiles(dirs.data, 'ret.db');
      assert.ok(segments.length >= 1 && segments.length <= 3, `old segments removed: ${segments.length} left`);
      assert.equal(path.basename(segments[0]!) === '0000000000000001.seg', false, 'the first segment is gone');
      assert.equal((await sqlite3(db, 'SELECT count(*) FROM t;')).stdout, '6\n');
    } finally {
      await node.stop();
      dirs.cleanup();
    }
  });
});
