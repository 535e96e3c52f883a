// A primary whose data directory fills up (a small tmpfs): the application
// gets an error, never a corrupt database; whichever write finds the disk
// full first (SQLite's own, or the transaction log's), every commit the
// application saw succeed is there once space is freed, in the log too.
// When the log cannot take a commit the node exits (exit-on-error), and a
// start on the still-full disk says so in one line instead of a stack.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { MountProcess, writeConfig } from '../support/cli.js';
import { JOURNAL_MODES, python, run, sqlite3, tempDirs } from '../support/clients.js';
import { logicalBytes, replay, sha256 } from '../support/txlog.js';
import { mountPoints } from '../../src/fuse/mountpoint.js';

/** Commits one small row at a time until SQLite reports an error; prints how many succeeded. */
const WRITER = `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
c.execute('PRAGMA journal_mode=' + sys.argv[2])
c.execute('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)')
acked, error = 0, ''
try:
    for i in range(1, 100000):
        c.execute('INSERT INTO t(id, v) VALUES (?, randomblob(200))', (i,))
        acked = i
except Exception as e:
    error = str(e)
print(acked)
print(error)
`;

async function startOrFail(config: string, mnt: string): Promise<{ node?: MountProcess; error?: string }> {
  try {
    return { node: await MountProcess.start(config, mnt) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

describe('a full disk under the data directory', () => {
  for (const mode of JOURNAL_MODES) {
    test(`${mode}: the application gets an error, nothing acknowledged is lost, and the node goes on once space is freed`, async () => {
      const dirs = tempDirs();
      const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dirs.data]);
      assert.equal(mounted.code, 0, mounted.stderr);
      let node: MountProcess | undefined;
      try {
        const config = writeConfig(dirs.root, { mnt: dirs.mnt, data: dirs.data });
        node = await MountProcess.start(config, dirs.mnt);
        const db = path.join(dirs.mnt, 'full.db');
        const w = await python(WRITER, [db, mode]);
        const [ackedText, error] = w.stdout.split('\n');
        const acked = Number(ackedText);
        assert.ok(acked > 100, `only ${acked} commits before the disk was full: ${w.stdout}${w.stderr}`);
        assert.match(error ?? '', /full|disk I\/O error|unable to open|readonly|no such/i, `the writer stopped on an error: ${w.stdout}`);

        // Either SQLite's own write found the disk full (the node serves on), or the log's did
        // (the commit path failed: the node exits with LiteFS's code 99 and names the log).
        const exited = await Promise.race([node.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 1500))]);
        console.log(`${mode}: after ${acked} commits ${exited === 'running' ? "SQLite's own write" : 'the transaction log'} found the disk full`);
        if (exited === 'running') {
          assert.equal((await sqlite3(db, 'PRAGMA integrity_check;')).stdout, 'ok\n');
          await node.stop();
        } else {
          assert.equal(exited, 99, node.output);
          assert.match(node.output, /commit path error.*cannot write the transaction log .*ENOSPC/);
          // Started again on the still-full disk: one line, no stack.
          const again = await startOrFail(config, dirs.mnt);
          if (again.node) await again.node.stop();
          else assert.match(again.error!, /database full\.db: cannot write the transaction log .*ENOSPC.*free space under/);
          assert.doesNotMatch(again.error ?? '', /\n\s+at /, 'no stack trace');
        }
        node = undefined;
        assert.equal(mountPoints().has(dirs.mnt), false);

        // Space freed: every acknowledged commit is there, the log agrees with the database, writes go on.
        assert.equal((await run('mount', ['-o', 'remount,size=32m', dirs.data])).code, 0);
        node = await MountProcess.start(config, dirs.mnt);
        const r = await sqlite3(db, `PRAGMA integrity_check; SELECT count(*) FROM t WHERE id <= ${acked}; SELECT max(id) FROM t;`);
        const [check, present, maxId] = r.stdout.trim().split('\n');
        assert.equal(check, 'ok', r.stderr);
        assert.equal(Number(present), acked, 'every acknowledged commit is present');
        assert.ok(Number(maxId) <= acked + 1, 'at most the commit that failed, when SQLite had finished it');
        const more = await python(WRITER.replace('range(1, 100000)', `range(${Number(maxId) + 1}, ${Number(maxId) + 11})`), [db, mode]);
        assert.equal(more.stdout.split('\n')[1], '', `writes go on: ${more.stdout}`);
        const txid = parseInt(fs.readFileSync(`${db}-pos`, 'utf8').slice(0, 16), 16);
        assert.equal(txid, Number(maxId) + 10 + (mode === 'wal' ? 2 : 1), 'one TXID per commit, plus the table (and the switch to WAL)');
        await node.stop();
        node = undefined;
        const logged = replay(dirs.data, 'full.db');
        assert.equal(logged.txid, txid);
        assert.equal(sha256(logged.bytes), sha256(logicalBytes(path.join(dirs.data, 'dbs', 'full.db'))), 'the log replays to the database');
      } finally {
        if (node) await node.stop('SIGKILL');
        if (mountPoints().has(dirs.mnt)) await run('fusermount3', ['-u', '-z', dirs.mnt]);
        await run('umount', [dirs.data]);
        dirs.cleanup();
      }
    });
  }
});
