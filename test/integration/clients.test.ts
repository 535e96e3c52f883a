// SQLite through the mount with three clients no one here wrote, in every
// journal mode: 10k rows in, read back, integrity_check, and concurrent
// readers beside one writer in separate processes.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { useMountFixture } from '../support/fixture.js';
import { JOURNAL_MODES, python, sqlite3 } from '../support/clients.js';

const ROWS = 10_000;

describe('sqlite clients through the mount', () => {
  const ctx = useMountFixture();
  const dirs = ctx.dirs;

  for (const mode of JOURNAL_MODES) {
    test(`sqlite3 CLI, ${mode}: 10k rows, read back, integrity ok`, async () => {
      const db = `${dirs.mnt}/cli-${mode}.db`;
      const r = await sqlite3(
        db,
        `PRAGMA journal_mode=${mode};
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ${ROWS})
         INSERT INTO t SELECT i, printf('row-%05d', i) FROM n;
         SELECT count(*), sum(id), max(v) FROM t;
         PRAGMA integrity_check;`,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${mode}\n${ROWS}|${(ROWS * (ROWS + 1)) / 2}|row-${ROWS}\nok\n`);
    });

    test(`better-sqlite3, ${mode}: 10k rows in 500 transactions, read back, integrity ok`, () => {
      const db = new Database(`${dirs.mnt}/bsq-${mode}.db`);
      try {
        assert.equal(db.pragma(`journal_mode=${mode}`, { simple: true }), mode);
        db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
        const insert = db.prepare('INSERT INTO t VALUES (?, ?)');
        const batch = db.transaction((from: number) => {
          for (let i = from; i < from + 20; i++) insert.run(i, Buffer.alloc(50 + (i % 200), i % 256));
        });
        for (let i = 1; i <= ROWS; i += 20) batch(i);
        const row = db.prepare('SELECT count(*) AS n, sum(length(v)) AS bytes FROM t').get() as { n: number; bytes: number };
        assert.equal(row.n, ROWS);
        let bytes = 0;
        for (let i = 1; i <= ROWS; i++) bytes += 50 + (i % 200);
        assert.equal(row.bytes, bytes);
        assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      } finally {
        db.close();
      }
      // A fresh connection reads the same through the kernel's cache.
      const again = new Database(`${dirs.mnt}/bsq-${mode}.db`, { readonly: true });
      assert.equal((again.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, ROWS);
      again.close();
    });

    test(`python sqlite3, ${mode}: 10k rows, read back, integrity ok`, async () => {
      const r = await python(
        `
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("PRAGMA journal_mode=${mode}").fetchone()[0])
con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
with con:
    con.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * (i % 300)) for i in range(1, ${ROWS + 1})))
print(con.execute("SELECT count(*), sum(length(v)) FROM t").fetchone())
print(con.execute("PRAGMA integrity_check").fetchone()[0])
`,
        [`${dirs.mnt}/py-${mode}.db`],
      );
      assert.equal(r.code, 0, r.stderr);
      let bytes = 0;
      for (let i = 1; i <= ROWS; i++) bytes += i % 300;
      assert.equal(r.stdout, `${mode}\n(${ROWS}, ${bytes})\nok\n`);
    });

    test(`${mode}: concurrent readers and one writer in separate processes`, async () => {
      const db = `${dirs.mnt}/conc-${mode}.db`;
      const setup = await sqlite3(db, `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
      assert.equal(setup.code, 0, setup.stderr);
      const writes = 1500;
      const writer = python(
        `
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
for i in range(1, ${writes + 1}):
    con.execute("INSERT INTO t VALUES (?, ?)", (i, "v%d" % i))
print("done")
`,
        [db],
      );
      // Readers check each snapshot is consistent: count equals max(id), and never shrinks.
      const reader = () =>
        python(
          `
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
last = 0
reads = 0
while True:
    n, m = con.execute("SELECT count(*), coalesce(max(id), 0) FROM t").fetchone()
    assert n == m, (n, m)
    assert n >= last, (n, last)
    last = n
    reads += 1
    if n == ${writes}:
        break
print(reads)
`,
          [db],
        );
      const [w, r1, r2] = await Promise.all([writer, reader(), reader()]);
      assert.equal(w.code, 0, w.stderr);
      assert.equal(r1.code, 0, r1.stderr);
      assert.equal(r2.code, 0, r2.stderr);
      assert.ok(Number(r1.stdout) > 1 && Number(r2.stdout) > 1, 'readers read while the writer wrote');
      const check = await sqlite3(db, 'SELECT count(*) FROM t; PRAGMA integrity_check;');
      assert.equal(check.stdout, `${writes}\nok\n`);
    });
  }
});
