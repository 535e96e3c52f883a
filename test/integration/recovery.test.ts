// Crash safety and bad input for a single-node primary: kill -9 during a
// stream of commits loses no acknowledged commit; damaged logs and files
// changed underneath are reported and repaired, never silently accepted.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { JOURNAL_MODES, sleep, sqlite3, tempDirs } from '../support/clients.js';
import { MountProcess, writeConfig } from '../support/cli.js';
import { logEntries, logicalBytes, logRecords, replay, sha256 } from '../support/txlog.js';
import { formatPosition } from '../../src/txlog/checksum.js';

const WRITER = `
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
con.execute("PRAGMA journal_mode=" + sys.argv[2])
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
i = 0
while True:
    i += 1
    con.execute("INSERT INTO t VALUES (?, randomblob(?))", (i, 50 + (i * 131) % 3000))
    print(i, flush=True)
`;

function lastLogPosition(dataDir: string, db: string): string {
  const records = logRecords(dataDir, db);
  const tx = records[records.length - 1]!;
  return formatPosition(tx.maxTxid, tx.postApplyChecksum);
}

describe('kill -9 of litefs during a stream of commits', () => {
  for (const mode of JOURNAL_MODES) {
    test(`${mode}: every acknowledged commit survives; position equals the last transaction file`, async () => {
      const dirs = tempDirs();
      const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
      let node = await MountProcess.start(cfg, dirs.mnt);
      const db = `${dirs.mnt}/crash.db`;
      const writer = spawn('python3', ['-c', WRITER, db, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
      let acknowledged = 0;
      readline.createInterface({ input: writer.stdout! }).on('line', (l) => (acknowledged = Number(l)));
      try {
        while (acknowledged < 200) await sleep(20);
        await node.stop('SIGKILL');
        const writerExit = new Promise((r) => writer.once('exit', r));
        await Promise.race([writerExit, sleep(2000)]);
        if (writer.exitCode === null) writer.kill('SIGKILL');
        await writerExit;

        node = await MountProcess.start(cfg, dirs.mnt);
        const r = await sqlite3(db, 'PRAGMA integrity_check; SELECT count(*), max(id) FROM t;');
        const [check, counts] = r.stdout.trim().split('\n');
        assert.equal(check, 'ok', r.stderr);
        const [count, max] = counts!.split('|').map(Number);
        assert.ok(max! >= acknowledged, `acknowledged ${acknowledged}, found max ${max}`);
        assert.equal(count, max, 'no gaps');
        assert.equal(fs.readFileSync(`${db}-pos`, 'utf8').trim(), lastLogPosition(dirs.data, 'crash.db'));
        assert.equal(sha256(replay(dirs.data, 'crash.db').bytes), sha256(logicalBytes(path.join(dirs.data, 'dbs', 'crash.db'))));
      } finally {
        if (writer.exitCode === null && writer.signalCode === null) writer.kill('SIGKILL');
        await node.stop();
        dirs.cleanup();
      }
    });
  }
});

describe('bad input in the data directory', () => {
  async function withNode(fn: (ctx: { dirs: ReturnType<typeof tempDirs>; cfg: string; start: () => Promise<MountProcess> }) => Promise<void>) {
    const dirs = tempDirs();
    const cfg = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
    try {
      await fn({ dirs, cfg, start: () => MountProcess.start(cfg, dirs.mnt) });
    } finally {
      dirs.cleanup();
    }
  }

  async function makeDb(node: MountProcess, file: string, commits: number): Promise<void> {
    let sql = 'PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v);';
    for (let i = 1; i <= commits; i++) sql += `INSERT INTO t VALUES (${i}, randomblob(100));`;
    const r = await sqlite3(file, sql);
    assert.equal(r.code, 0, r.stderr + node.output);
  }

  test('a corrupted transaction file in the middle: reported, moved aside, database intact', async () => {
    await withNode(async ({ dirs, start }) => {
      let node = await start();
      await makeDb(node, `${dirs.mnt}/c.db`, 10);
      assert.equal(await node.stop(), 0);
      const victim = logEntries(dirs.data, 'c.db')[5]!;
      const bytes = fs.readFileSync(victim.segment);
      bytes[victim.offset + victim.length - 30] ^= 0xff;
      fs.writeFileSync(victim.segment, bytes);
      node = await start();
      try {
        assert.match(node.output, /transaction log damaged: transaction file \S+: .*checksum/);
        const quarantined = fs.readdirSync(path.join(dirs.data, 'txlog', 'c.db')).filter((n) => n.startsWith('quarantine-'));
        assert.equal(quarantined.length, 1, 'the damaged tail is kept aside');
        const r = await sqlite3(`${dirs.mnt}/c.db`, 'PRAGMA integrity_check; SELECT count(*) FROM t; INSERT INTO t VALUES (11, 1);');
        assert.equal(r.stdout, 'ok\n10\n');
        // The log continues from the last good file with a full record, then the new commit.
        const pos = fs.readFileSync(`${dirs.mnt}/c.db-pos`, 'utf8');
        assert.match(pos, /^0{15}[0-9a-f]\//);
        assert.equal(sha256(logicalBytes(path.join(dirs.data, 'dbs', 'c.db'))), sha256(replayFromFull(dirs.data, 'c.db')));
      } finally {
        await node.stop();
      }
    });
  });

  test('a truncated last transaction file', async () => {
    await withNode(async ({ dirs, start }) => {
      let node = await start();
      await makeDb(node, `${dirs.mnt}/t.db`, 5);
      await node.stop();
      const entries = logEntries(dirs.data, 't.db');
      const last = entries[entries.length - 1]!;
      fs.truncateSync(last.segment, last.offset + Math.floor(last.length / 2));
      node = await start();
      try {
        assert.match(node.output, /transaction log damaged.*truncated/);
        const r = await sqlite3(`${dirs.mnt}/t.db`, 'PRAGMA integrity_check; SELECT count(*) FROM t;');
        assert.equal(r.stdout, 'ok\n5\n');
        assert.equal(fs.readFileSync(`${dirs.mnt}/t.db-pos`, 'utf8').trim(), lastLogPosition(dirs.data, 't.db'));
      } finally {
        await node.stop();
      }
    });
  });

  test('a database file replaced underneath: detected, recorded as a full transaction', async () => {
    await withNode(async ({ dirs, start }) => {
      let node = await start();
      await makeDb(node, `${dirs.mnt}/r.db`, 3);
      await node.stop();
      const other = path.join(dirs.root, 'other.db');
      assert.equal((await sqlite3(other, 'CREATE TABLE u(x); INSERT INTO u VALUES (42);')).code, 0);
      const before = logRecords(dirs.data, 'r.db').length;
      fs.copyFileSync(other, path.join(dirs.data, 'dbs', 'r.db'));
      fs.rmSync(path.join(dirs.data, 'dbs', 'r.db-wal'), { force: true });
      node = await start();
      try {
        assert.match(node.output, /does not match its transaction log/);
        const r = await sqlite3(`${dirs.mnt}/r.db`, 'PRAGMA integrity_check; SELECT x FROM u;');
        assert.equal(r.stdout, 'ok\n42\n');
        assert.equal(logRecords(dirs.data, 'r.db').length, before + 1);
        assert.equal(fs.readFileSync(`${dirs.mnt}/r.db-pos`, 'utf8').trim(), lastLogPosition(dirs.data, 'r.db'));
      } finally {
        await node.stop();
      }
    });
  });
});

/** Replays from the newest full record (one whose pages cover the whole database). */
function replayFromFull(dataDir: string, db: string): Buffer {
  let bytes = Buffer.alloc(0);
  let started = false;
  for (const tx of logRecords(dataDir, db)) {
    const full = tx.pages.length >= tx.commitSize - 1;
    if (!started && !full) continue;
    started = true;
    const size = tx.commitSize * tx.pageSize;
    const next = Buffer.alloc(size);
    bytes.copy(next, 0, 0, Math.min(size, bytes.length));
    bytes = next;
    for (const p of tx.pages) p.data.copy(bytes, (p.pgno - 1) * tx.pageSize);
  }
  return bytes;
}
