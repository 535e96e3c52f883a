// The read-only switch: write attempts fail at once with a SQLite error,
// reads keep working, nothing changes; switching it off restores writes.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { familyOptions, useMountFixture } from '../support/fixture.js';
import { HeldConnection, JOURNAL_MODES, python, sqlite3 } from '../support/clients.js';

describe('read-only switch', () => {
  const ctx = useMountFixture();
  const dirs = ctx.dirs;

  // The -shm stays writable: readers record their read marks in it.
  const family = (name: string) => [name, `${name}-journal`, `${name}-wal`];

  for (const mode of JOURNAL_MODES) {
    test(`${mode}: writes fail at once with a clear error, reads go on`, async () => {
      const name = `ro-${mode}.db`;
      const db = `${dirs.mnt}/${name}`;
      const setup = await sqlite3(db, `PRAGMA journal_mode=${mode}; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);`);
      assert.equal(setup.code, 0, setup.stderr);
      // Opened for writing before the switch, and holding the file open.
      const held = await HeldConnection.open(db, 0);
      await held.query(`PRAGMA journal_mode=${mode}`);
      assert.deepEqual((await held.query('SELECT count(*) FROM t')).rows, [[2]]);
      for (const f of family(name)) await ctx.fx.call({ cmd: 'setFile', name: f, opts: { ...familyOptions(f), readOnly: true } });

      const cli = await sqlite3(db, `PRAGMA journal_mode=${mode}; INSERT INTO t VALUES (3);`);
      assert.notEqual(cli.code, 0);
      assert.match(cli.stderr, /attempt to write a readonly database/);

      const py = await python(`
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=0)
try:
    con.execute("INSERT INTO t VALUES (4)")
    con.commit()
    print("wrote")
except sqlite3.OperationalError as e:
    print(e)
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
`, [db]);
      assert.equal(py.stdout, 'attempt to write a readonly database\n2\n', py.stderr);

      const bsq = new Database(db, { timeout: 0 });
      try {
        assert.throws(() => bsq.prepare('INSERT INTO t VALUES (5)').run(), /attempt to write a readonly database/);
        assert.equal((bsq.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 2);
      } finally {
        bsq.close();
      }

      // The connection opened read-write earlier gets an I/O-class error at
      // its first write (the kernel gave it a writable descriptor), and reads on.
      const heldWrite = await held.query('INSERT INTO t VALUES (6)');
      assert.match(heldWrite.error ?? '', /disk I\/O error|unable to open database file|readonly/);
      assert.deepEqual((await held.query('SELECT count(*) FROM t')).rows, [[2]]);
      await held.close();

      const reads = await sqlite3(db, 'SELECT count(*) FROM t; PRAGMA integrity_check;');
      assert.equal(reads.stdout, '2\nok\n');

      for (const f of family(name)) await ctx.fx.call({ cmd: 'setFile', name: f, opts: familyOptions(f) });
      const again = await sqlite3(db, `PRAGMA journal_mode=${mode}; INSERT INTO t VALUES (7); SELECT count(*) FROM t; PRAGMA integrity_check;`);
      assert.equal(again.stdout, `${mode}\n3\nok\n`, again.stderr);
    });
  }
});
