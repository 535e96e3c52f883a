// Replication with 1 primary + 2 replicas, each a `litefs mount` process:
// commits reach the replicas byte-identical in every journal mode, replicas
// refuse writes, name the primary and show their lag, and databases created
// or deleted on the primary are created or deleted on the replicas, and
// replicas follow the primary through journal mode switches.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { JOURNAL_MODES, python, sqlite3 } from '../support/clients.js';
import { checkpoint, Cluster, mountedSha256, readPos } from '../support/cluster.js';

async function integrityOk(file: string): Promise<void> {
  const r = await sqlite3(file, 'PRAGMA integrity_check;');
  assert.equal(r.stdout.trim().split('\n').pop(), 'ok', `${file}: ${r.stdout}${r.stderr}`);
}

/** Every node's copy of `db` has the same bytes, and is sound. */
async function assertIdentical(cluster: Cluster, db: string): Promise<void> {
  await checkpoint(cluster.primary, db);
  await cluster.waitInSync(db);
  const want = mountedSha256(cluster.primary, db);
  for (const r of cluster.replicas) {
    assert.equal(mountedSha256(r, db), want, `${r.name}: ${db} differs from the primary's`);
    await integrityOk(path.join(r.mnt, db));
  }
}

describe('replication: 1 primary + 2 replicas', () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await Cluster.create(2);
    await cluster.startAll();
  });
  after(async () => {
    await cluster.destroy();
  });

  for (const mode of JOURNAL_MODES) {
    test(`${mode}: commits reach both replicas byte-identical; replicas are read-only`, async () => {
      const name = `rep-${mode}.db`;
      const db = path.join(cluster.primary.mnt, name);
      const setup = await sqlite3(db, `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
      assert.equal(setup.code, 0, setup.stderr);
      for (let i = 0; i < 20; i++) {
        const r = await sqlite3(db, `PRAGMA journal_mode=${mode}; INSERT INTO t(v) SELECT hex(randomblob(${50 + i * 40})) FROM (SELECT 1 UNION ALL SELECT 2);`);
        assert.equal(r.code, 0, r.stderr);
      }
      await assertIdentical(cluster, name);
      for (const r of cluster.replicas) {
        const rows = await sqlite3(path.join(r.mnt, name), 'SELECT count(*) FROM t;');
        assert.equal(rows.stdout, '40\n');
        assert.equal(fs.readFileSync(path.join(r.mnt, '.primary'), 'utf8'), 'primary-host\n');
        assert.match(fs.readFileSync(path.join(r.mnt, '.lag'), 'utf8'), /^\d+\n$/);

        // Writes fail at once with SQLite's read-only error, in every client.
        const cli = await sqlite3(path.join(r.mnt, name), 'INSERT INTO t(v) VALUES (1);');
        assert.notEqual(cli.code, 0);
        assert.match(cli.stderr, /attempt to write a readonly database/);
        const py = await python(
          `import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1], timeout=0)\ntry:\n    con.execute("INSERT INTO t(v) VALUES (1)"); con.commit(); print("wrote")\nexcept sqlite3.OperationalError as e:\n    print(e)\n`,
          [path.join(r.mnt, name)],
        );
        assert.equal(py.stdout, 'attempt to write a readonly database\n', py.stderr);
        const bsq = new Database(path.join(r.mnt, name), { timeout: 0 });
        try {
          assert.throws(() => bsq.prepare('INSERT INTO t(v) VALUES (1)').run(), /attempt to write a readonly database/);
        } finally {
          bsq.close();
        }
      }
      assert.ok(!fs.existsSync(path.join(cluster.primary.mnt, '.primary')), 'the primary has no .primary');
      assert.equal(fs.readFileSync(path.join(cluster.primary.mnt, '.lag'), 'utf8'), '0\n');
    });
  }

  test('GET /metrics: role, subscribers, lag and each database\'s TXID, read when scraped', async () => {
    const db = path.join(cluster.primary.mnt, 'metered.db');
    assert.equal((await sqlite3(db, 'CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);')).code, 0);
    await cluster.waitInSync('metered.db');
    const txid = Number.parseInt(readPos(cluster.primary, 'metered.db').slice(0, 16), 16);
    const scrape = async (url: string): Promise<Map<string, number>> => {
      const res = await fetch(`${url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      const out = new Map<string, number>();
      for (const line of (await res.text()).split('\n')) if (line && !line.startsWith('#')) out.set(line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)));
      return out;
    };
    const primary = await scrape(cluster.primary.url);
    assert.equal(primary.get('litefs_is_primary'), 1);
    assert.equal(primary.get('litefs_subscriber_count'), cluster.replicas.length);
    assert.equal(primary.get('litefs_db_txid{db="metered.db"}'), txid);
    for (const r of cluster.replicas) {
      const replica = await scrape(r.url);
      assert.equal(replica.get('litefs_is_primary'), 0);
      assert.equal(replica.get('litefs_db_txid{db="metered.db"}'), txid);
      assert.ok((replica.get('litefs_lag_seconds') ?? NaN) >= 0);
    }
    // A commit after the first scrape shows in the next one.
    assert.equal((await sqlite3(db, 'INSERT INTO t VALUES (3);')).code, 0);
    assert.equal((await scrape(cluster.primary.url)).get('litefs_db_txid{db="metered.db"}'), txid + 1);
  });

  test('a database created on the primary appears on replicas; one deleted there is deleted on replicas', async () => {
    const db = path.join(cluster.primary.mnt, 'born.db');
    assert.equal((await sqlite3(db, 'CREATE TABLE t(x); INSERT INTO t VALUES (42);')).code, 0);
    await cluster.waitInSync('born.db');
    for (const r of cluster.replicas) assert.equal((await sqlite3(path.join(r.mnt, 'born.db'), 'SELECT x FROM t;')).stdout, '42\n');

    fs.unlinkSync(db);
    const deadline = Date.now() + 10_000;
    while (cluster.replicas.some((r) => fs.existsSync(path.join(r.mnt, 'born.db')))) {
      assert.ok(Date.now() < deadline, 'replicas still have born.db');
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const r of cluster.replicas) assert.equal(readPos(r, 'born.db'), '');
    // Replicas cannot create databases of their own.
    const made = await sqlite3(path.join(cluster.replicas[0]!.mnt, 'mine.db'), 'CREATE TABLE t(x);');
    assert.notEqual(made.code, 0);
    assert.ok(!fs.existsSync(path.join(cluster.replicas[0]!.mnt, 'mine.db')));
  });

  test('journal mode switches on the primary (wal, delete, wal, truncate, persist, wal): replicas follow each', async () => {
    const name = 'modes.db';
    const w = new Database(path.join(cluster.primary.mnt, name));
    w.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    let rows = 0;
    try {
      for (const mode of ['wal', 'delete', 'wal', 'truncate', 'persist', 'wal']) {
        w.pragma(`journal_mode=${mode}`);
        for (let i = 0; i < 5; i++) w.prepare('INSERT INTO t(v) VALUES (?)').run(`${mode}-${i}`);
        rows += 5;
        await cluster.waitInSync(name);
        for (const r of cluster.replicas) {
          // A connection held through a switch out of WAL mode would hold the switch up (README): one per look.
          const look = await sqlite3(path.join(r.mnt, name), 'SELECT count(*) FROM t;');
          assert.equal(look.stdout, `${rows}\n`, `${r.name} after the switch to ${mode}: ${look.stderr}`);
          assert.equal(fs.existsSync(path.join(r.mnt, `${name}-wal`)), mode === 'wal', `${r.name}'s -wal after the switch to ${mode}`);
        }
      }
    } finally {
      w.close();
    }
    await assertIdentical(cluster, name);
  });

  test('10k commits on several databases, random sizes, VACUUMs: replicas end byte-identical', async () => {
    const names = JOURNAL_MODES.map((m) => `bulk-${m}.db`);
    const conns = JOURNAL_MODES.map((mode, i) => {
      const c = new Database(path.join(cluster.primary.mnt, names[i]!));
      c.pragma(`journal_mode=${mode}`);
      c.pragma('synchronous=OFF'); // durability is not what this test is about; fsyncs would make it minutes
      c.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
      return c;
    });
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 10_000; i++) {
      const c = conns[i % conns.length]!;
      if (i % 2500 === 2499) {
        c.exec('DELETE FROM t WHERE id % 3 = 0');
        c.exec('VACUUM');
      } else if (rand(10) === 0) {
        c.prepare('DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3)').run();
      } else {
        c.prepare('INSERT INTO t(v) VALUES (randomblob(?))').run(1 + rand(rand(20) === 0 ? 20_000 : 600));
      }
    }
    for (const c of conns) c.close();
    for (const name of names) await assertIdentical(cluster, name);
  });
});
