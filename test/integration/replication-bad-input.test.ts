// Bad input on the replication stream, fed to a real replica (`litefs mount`,
// candidate: false) by a scripted fake primary: a truncated record, a flipped
// bit in a page (record checksum resealed, and left stale), a wrong
// pre-apply checksum, a wrong page size, an unknown record type, absurd
// lengths, a wrong post-apply checksum. For each the replica drops the
// stream, logs one line saying why, keeps its database as it was (same bytes,
// same position, sound, process alive), reconnects and re-syncs from a good
// continuation (or, for a database put in doubt, from a snapshot).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { sleep, sqlite3, tempDirs } from '../support/clients.js';
import { MountProcess } from '../support/cli.js';
import { freePort } from '../support/cluster.js';
import {
  FakePrimary, rawRecord, resealed, segmentFile, SourceDb, type Session, type SourceTx, type StreamRequest,
} from '../support/fake-primary.js';
import { encodeRecord, readyRecord, RecordType, walSegmentRecord } from '../../src/replication/records.js';
import { mountPoints } from '../../src/fuse/mountpoint.js';
import { databaseChecksum } from '../../src/txlog/checksum.js';
import { encodeTransaction, TX_HEADER_SIZE } from '../../src/txlog/txfile.js';

const ZERO_POSITION = '0000000000000000/0000000000000000';
const STREAM_ENDED = /replication stream ended: /;
const ROW = (n: number) => `INSERT INTO t(v) VALUES (randomblob(${n}));`;

describe('replica fed crafted streams by a fake primary', () => {
  const dirs = tempDirs('litefs-badinput-');
  const srcDir = path.join(dirs.root, 'src');
  fs.mkdirSync(srcDir);
  let fake: FakePrimary;
  let replica: MountProcess | undefined;
  const sources: SourceDb[] = [];
  let del: SourceDb;
  let wal: SourceDb;

  const mounted = (db: SourceDb) => path.join(dirs.mnt, db.name);
  const readPos = (db: SourceDb) => {
    try {
      return fs.readFileSync(`${mounted(db)}-pos`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const mountedSha = (db: SourceDb) => crypto.createHash('sha256').update(fs.readFileSync(mounted(db))).digest('hex');
  const endedLines = () => (replica?.output ?? '').split('\n').filter((l) => STREAM_ENDED.test(l));

  async function integrityOk(db: SourceDb): Promise<void> {
    const r = await sqlite3(mounted(db), 'PRAGMA integrity_check;');
    assert.equal(r.stdout.trim().split('\n').pop(), 'ok', `${db.name}: ${r.stdout}${r.stderr}`);
  }

  async function rows(db: SourceDb): Promise<number> {
    const r = await sqlite3(mounted(db), 'SELECT count(*) FROM t;');
    assert.equal(r.code, 0, r.stderr);
    return Number(r.stdout.trim().split('\n').pop());
  }

  async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${replica?.output ?? ''}`);
      await sleep(20);
    }
  }

  /** The replica's copy equals the source: position, bytes, rows, integrity. */
  async function assertMatchesSource(db: SourceDb): Promise<void> {
    await waitFor(`${db.name} at ${db.position}`, () => readPos(db) === db.position);
    assert.equal(mountedSha(db), db.sha256, `${db.name}: bytes differ from the source's`);
    assert.equal(await rows(db), db.scalar('SELECT count(*) FROM t'));
    await integrityOk(db);
  }

  /** What a real primary would send a replica at these positions: catch-up for every database, READY, then heartbeats. */
  function goodSession(req: StreamRequest): Session {
    return { body: [fake.hello(), ...sources.flatMap((s) => s.catchUp(req.positions[s.name])), readyRecord()] };
  }

  before(async () => {
    fake = await FakePrimary.start();
    fake.respond = goodSession;
    del = new SourceDb(srcDir, 'del.db', 'delete');
    wal = new SourceDb(srcDir, 'wal.db', 'wal');
    sources.push(del, wal);
    // TXIDs 1..3 go to the replica as a snapshot, 4..5 as one WAL_SEGMENT each.
    for (const s of sources) {
      s.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);');
      s.exec(ROW(3000) + ROW(100));
      s.exec(ROW(5000));
    }
    const snapshots = sources.flatMap((s) => s.snapshot(2, s === wal));
    const segments = sources.flatMap((s) => [s.exec(ROW(200)), s.exec(ROW(7000))].map((t) => walSegmentRecord(s.name, [segmentFile(t.tx, t.bytes)])));
    fake.enqueue({ body: [fake.hello(), ...snapshots, ...segments, readyRecord()] });

    const port = await freePort();
    const config = path.join(dirs.root, 'replica.yml');
    fs.writeFileSync(
      config,
      `fuse:\n  dir: "${dirs.mnt}"\ndata:\n  dir: "${dirs.data}"\nhttp:\n  addr: "127.0.0.1:${port}"\n` +
        `lease:\n  type: static\n  hostname: fake-primary\n  candidate: false\n  advertise-url: "${fake.url}"\n  reconnect-delay: 200ms\n`,
    );
    replica = await MountProcess.start(config, dirs.mnt);
  });

  after(async () => {
    await replica?.stop().catch(() => undefined);
    if (mountPoints().has(dirs.mnt)) spawnSync('fusermount3', ['-u', dirs.mnt]); // only if the stop left it
    await fake?.stop();
    for (const s of sources) s.close();
    dirs.cleanup();
  });

  test('a good snapshot and WAL segments give the replica the real databases', async () => {
    const first = await fake.waitForRequest(1);
    assert.deepEqual(first.positions, {}, 'a new replica has no positions');
    for (const s of sources) await assertMatchesSource(s);
    assert.equal(await rows(del), 5);
    const mode = await sqlite3(mounted(wal), 'PRAGMA journal_mode;');
    assert.equal(mode.stdout.trim(), 'wal');
    assert.equal(endedLines().length, 0, replica!.output);
    assert.equal(fs.readFileSync(path.join(dirs.mnt, '.primary'), 'utf8'), 'fake-primary\n');
  });

  interface BadInput {
    /** The database whose next transaction the good continuation carries. */
    db: SourceDb;
    /** Feeds the bad input into the open stream; `good` is the source's next transaction, not yet sent. */
    inject: (good: SourceTx) => void | Promise<void>;
    /** The one line the replica logs. */
    reason: RegExp;
    /** The database is left in doubt: the next request asks for a snapshot. */
    doubt?: boolean;
  }

  /** The whole check around one bad input; see the file's comment. */
  async function badInput(c: BadInput): Promise<void> {
    const { db } = c;
    await waitFor('the stream to be up', () => fake.connected);
    for (const s of sources) await waitFor(`${s.name} in sync before the bad input`, () => readPos(s) === s.position);
    const was = { pos: readPos(db), sha: mountedSha(db), rows: await rows(db) };
    const others = sources.filter((s) => s !== db).map((s) => ({ s, pos: readPos(s), sha: mountedSha(s) }));

    const good = db.exec(ROW(1500) + ROW(300));
    const requests = fake.requests.length;
    const lines = endedLines().length;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fake.enqueue(async (req) => {
      await gate;
      return goodSession(req);
    });

    try {
      const injected = Date.now();
      await c.inject(good);
      const req = await fake.waitForRequest(requests + 1, 3000);
      assert.ok(req.at - injected < 2500, `reconnected after ${req.at - injected} ms`);
      await waitFor('the log line', () => endedLines().length > lines, 2000);
      await sleep(100); // a second line, if any, would be here by now
      const logged = endedLines().slice(lines);
      assert.equal(logged.length, 1, `exactly one line:\n${logged.join('\n')}`);
      assert.match(logged[0]!, c.reason);

      // Nothing changed while the stream is down.
      assert.equal(replica!.child.exitCode, null, 'the replica is still running');
      assert.equal(readPos(db), was.pos);
      assert.equal(mountedSha(db), was.sha);
      assert.equal(await rows(db), was.rows);
      await integrityOk(db);
      for (const o of others) {
        assert.equal(readPos(o.s), o.pos);
        assert.equal(mountedSha(o.s), o.sha);
      }

      // It asks again from where it is (from nothing, for a database in doubt).
      assert.equal(req.positions[db.name], c.doubt ? ZERO_POSITION : was.pos);
      for (const o of others) assert.equal(req.positions[o.s.name], o.pos);

      release();
      await assertMatchesSource(db);
      for (const o of others) await assertMatchesSource(o.s);
      assert.equal(endedLines().length, lines + 1, 're-synced without another error');
      assert.equal(replica!.child.exitCode, null);
    } finally {
      // Whatever failed, leave no request hanging and no script for a later test.
      release();
      if (fake.requests.length === requests) fake.clearQueue();
    }
  }

  /** A snapshot that failed left no scratch copy behind (data/tmp, see src/node.ts). */
  function noScratchLeft(): void {
    const scratch = path.join(dirs.data, 'tmp');
    assert.deepEqual(fs.existsSync(scratch) ? fs.readdirSync(scratch) : [], [], 'the half-received snapshot was removed');
  }

  /** The good transaction with one bit flipped in one of its pages, as a transaction file with a valid trailer. */
  function flippedTx(good: SourceTx): SourceTx['tx'] {
    const pages = good.tx.pages.map((p) => ({ pgno: p.pgno, data: Buffer.from(p.data) }));
    const page = pages[pages.length - 1]!;
    page.data[page.data.length >> 1]! ^= 0x10;
    return { ...good.tx, pages };
  }

  /** The offset in a transaction file of the middle of its last page. */
  function lastPageMiddle(good: SourceTx): number {
    const n = good.tx.pages.length;
    return TX_HEADER_SIZE + (n - 1) * (4 + good.tx.pageSize) + 4 + (good.tx.pageSize >> 1);
  }

  // ---- truncated --------------------------------------------------------

  test('truncated: the stream ends in the middle of a WAL_SEGMENT', () =>
    badInput({
      db: del,
      inject: (good) => {
        const rec = walSegmentRecord(del.name, [segmentFile(good.tx, good.bytes)]);
        fake.send(rec.subarray(0, rec.length >> 1));
        fake.end();
      },
      reason: /replication stream ended: stream record #\d+ \(WAL_SEGMENT\): truncated: stream ended after \d+ of \d+ record bytes/,
    }));

  test('truncated: the stream ends in the middle of a record header', () =>
    badInput({
      db: wal,
      inject: (good) => {
        fake.send(walSegmentRecord(wal.name, [segmentFile(good.tx, good.bytes)]).subarray(0, 30));
        fake.end();
      },
      reason: /replication stream ended: stream record #\d+ \(WAL_SEGMENT\): truncated: stream ended after 30 of 80 header bytes/,
    }));

  test('truncated: the connection is cut in the middle of a WAL_SEGMENT', () =>
    badInput({
      db: del,
      inject: async (good) => {
        const rec = walSegmentRecord(del.name, [segmentFile(good.tx, good.bytes)]);
        fake.send(rec.subarray(0, rec.length - 100));
        await fake.destroy();
      },
      reason: /replication stream ended: .*(terminated|closed|reset|socket)/i,
    }));

  // ---- flipped bits -----------------------------------------------------

  for (const which of ['del', 'wal'] as const) {
    test(`${which}: a flipped bit in a page, record checksum resealed: the transaction file's checksum catches it`, () => {
      const db = which === 'del' ? del : wal;
      return badInput({
        db,
        inject: (good) => {
          const rec = walSegmentRecord(db.name, [segmentFile(good.tx, good.bytes)]);
          const payloadAt = rec.length - good.bytes.length;
          rec[payloadAt + lastPageMiddle(good)]! ^= 0x10;
          fake.send(resealed(rec));
        },
        reason: new RegExp(`stream record #\\d+ \\(WAL_SEGMENT ${db.name}\\): transaction file \\S+: trailer checksum mismatch`),
      });
    });

    test(`${which}: a flipped bit in a page, record checksum stale: the record checksum catches it`, () => {
      const db = which === 'del' ? del : wal;
      return badInput({
        db,
        inject: (good) => {
          const rec = walSegmentRecord(db.name, [segmentFile(good.tx, good.bytes)]);
          rec[rec.length - good.bytes.length + lastPageMiddle(good)]! ^= 0x10;
          fake.send(rec);
        },
        reason: new RegExp(`stream record #\\d+ \\(WAL_SEGMENT ${db.name}\\): record checksum mismatch \\(corrupt\\)`),
      });
    });

    test(`${which}: a wrong pre-apply checksum (a valid file chained from another state) is refused`, () => {
      const db = which === 'del' ? del : wal;
      return badInput({
        db,
        inject: (good) => {
          // Chained from the state two transactions back: a real checksum of this database, just not the replica's.
          const other = db.history[db.history.length - 3]!.tx.postApplyChecksum;
          const tx = { ...good.tx, preApplyChecksum: other };
          fake.send(walSegmentRecord(db.name, [segmentFile(tx, encodeTransaction(tx, { compress: false }))]));
        },
        reason: new RegExp(`replication stream ended: database ${db.name}: transaction \\d+ has pre-apply position [0-9a-f]{16}/[0-9a-f]{16}, the replica is at [0-9a-f]{16}/[0-9a-f]{16}`),
      });
    });

    test(`${which}: a valid-looking WAL_SEGMENT whose pages do not lead to its post-apply checksum puts the database in doubt; a snapshot repairs it`, () => {
      const db = which === 'del' ? del : wal;
      return badInput({
        db,
        inject: (good) => {
          const tx = flippedTx(good); // post-apply checksum still the good one's
          fake.send(walSegmentRecord(db.name, [segmentFile(tx, encodeTransaction(tx, { compress: false }))]));
        },
        reason: new RegExp(`replication stream ended: database ${db.name}: transaction \\d+ leads to checksum [0-9a-f]+, the primary's is [0-9a-f]+`),
        doubt: true,
      });
    });
  }

  test('wal: a flipped bit in a SNAPSHOT chunk (record resealed): the snapshot checksum catches it; the copy is discarded', () =>
    badInput({
      db: wal,
      inject: () => {
        // A snapshot of the current state, sent live (as when a primary cannot continue a chain).
        const chunks = wal.snapshot(2, false);
        const last = chunks[chunks.length - 1]!;
        last[last.length - 100]! ^= 0x01; // inside the last page
        fake.send(...chunks.slice(0, -1), resealed(last));
      },
      reason: /stream record #\d+ \(SNAPSHOT wal\.db\): snapshot checksum [0-9a-f]{16} differs from its post-apply checksum [0-9a-f]{16}/,
    }).then(noScratchLeft));

  test('a WAL_SEGMENT with a stale pre-apply checksum in its header (its file is right) is refused', () =>
    badInput({
      db: del,
      inject: (good) => {
        const other = del.history[del.history.length - 3]!.tx.postApplyChecksum;
        const t = good.tx;
        fake.send(encodeRecord({
          type: RecordType.WalSegment, name: del.name, pageSize: t.pageSize, commitSize: t.commitSize, minTxid: t.minTxid, maxTxid: t.maxTxid,
          preApplyChecksum: other, postApplyChecksum: t.postApplyChecksum, payload: good.bytes,
        }));
      },
      reason: /stream record #\d+ \(WAL_SEGMENT del\.db\): first transaction's pre-apply checksum [0-9a-f]{16} differs from the header's/,
    }));

  // ---- wrong page size --------------------------------------------------

  test('wrong page size: a WAL_SEGMENT header says 1024, its transaction file 4096', () =>
    badInput({
      db: wal,
      inject: (good) => {
        const t = good.tx;
        fake.send(encodeRecord({
          type: RecordType.WalSegment, name: wal.name, pageSize: 1024, commitSize: t.commitSize, minTxid: t.minTxid, maxTxid: t.maxTxid,
          preApplyChecksum: t.preApplyChecksum, postApplyChecksum: t.postApplyChecksum, payload: good.bytes,
        }));
      },
      reason: /stream record #\d+ \(WAL_SEGMENT wal\.db\): \S+\.ltx has page size 4096, header says 1024/,
    }));

  test('wrong page size: a SNAPSHOT chunk with page size 3000', () =>
    badInput({
      db: del,
      inject: () => {
        const pages = del.image.subarray(0, 3000);
        fake.send(rawRecord({
          type: RecordType.Snapshot, flags: 2, pageSize: 3000, commitSize: 1, minTxid: 1n, maxTxid: BigInt(del.txid),
          postApplyChecksum: del.checksum, firstPgno: 1, pageCount: 1,
        }, del.name, pages));
      },
      reason: /stream record #\d+ \(SNAPSHOT\): page size 3000 is not a power of two in 512\.\.65536/,
    }));

  test('wrong page size: a snapshot whose second chunk has another page size is discarded', () =>
    badInput({
      db: del,
      inject: () => {
        const [chunk1] = del.snapshot(2);
        const pageSize = 4096;
        const commitSize = del.image.length / pageSize;
        assert.ok(commitSize >= 4, `${commitSize} pages`);
        fake.send(chunk1!, encodeRecord({
          type: RecordType.Snapshot, flags: 0, name: del.name, pageSize: 1024, commitSize, minTxid: 1, maxTxid: del.txid,
          postApplyChecksum: del.checksum, firstPgno: 3, pageCount: 1, payload: del.image.subarray(2 * pageSize, 2 * pageSize + 1024),
        }));
      },
      reason: /stream record #\d+ \(SNAPSHOT del\.db\): pageSize 1024 differs from the snapshot's first chunk \(4096\)/,
    }).then(noScratchLeft));

  // ---- unknown type, absurd lengths ---------------------------------------

  test('an unknown record type', () =>
    badInput({
      db: wal,
      inject: () => fake.send(rawRecord({ type: 9, timestamp: BigInt(Date.now()) })),
      reason: /stream record #\d+ \(type 9\): unknown record type 9/,
    }));

  test('absurd length: payload length 2^32-1 (header alone; the rest never comes)', () =>
    badInput({
      db: del,
      inject: (good) => {
        const t = good.tx;
        const header = rawRecord({
          type: RecordType.WalSegment, pageSize: t.pageSize, commitSize: t.commitSize, minTxid: BigInt(t.minTxid), maxTxid: BigInt(t.maxTxid),
          preApplyChecksum: t.preApplyChecksum, postApplyChecksum: t.postApplyChecksum, payloadLength: 0xffffffff,
        }, del.name).subarray(0, 80);
        fake.send(header);
      },
      reason: /stream record #\d+ \(WAL_SEGMENT\): payload length 4294967295 exceeds 68157440/,
    }));

  test('absurd length: name length 60000', () =>
    badInput({
      db: wal,
      inject: (good) => {
        const t = good.tx;
        fake.send(rawRecord({
          type: RecordType.WalSegment, nameLength: 60000, pageSize: t.pageSize, commitSize: t.commitSize, minTxid: BigInt(t.minTxid), maxTxid: BigInt(t.maxTxid),
          preApplyChecksum: t.preApplyChecksum, postApplyChecksum: t.postApplyChecksum,
        }, '', good.bytes));
      },
      reason: /stream record #\d+ \(WAL_SEGMENT\): name length 60000 exceeds 1024/,
    }));

  test('absurd length: a SNAPSHOT chunk of 2^32-1 pages', () =>
    badInput({
      db: del,
      inject: () =>
        fake.send(rawRecord({
          type: RecordType.Snapshot, flags: 2, pageSize: 4096, commitSize: 0xffffffff, minTxid: 1n, maxTxid: BigInt(del.txid),
          postApplyChecksum: del.checksum, firstPgno: 1, pageCount: 0xffffffff, payloadLength: 4096,
        }, del.name, del.image.subarray(0, 4096))),
      reason: /stream record #\d+ \(SNAPSHOT\): page count 4294967295 is not in 1\.\.4096/,
    }));

  test('absurd length: a transaction file claiming 2^32-1 pages inside a sound record', () =>
    badInput({
      db: wal,
      inject: (good) => {
        const bytes = Buffer.from(good.bytes);
        bytes.writeUInt32BE(0xffffffff, 56); // the transaction file's page count
        const t = good.tx;
        fake.send(encodeRecord({
          type: RecordType.WalSegment, name: wal.name, pageSize: t.pageSize, commitSize: t.commitSize, minTxid: t.minTxid, maxTxid: t.maxTxid,
          preApplyChecksum: t.preApplyChecksum, postApplyChecksum: t.postApplyChecksum, payload: bytes,
        }));
      },
      reason: /stream record #\d+ \(WAL_SEGMENT wal\.db\): transaction file .*page count 4294967295/,
    }));

  // ---- a consistent segment that changes the page size ---------------------

  // Every checksum in this record is right, and it chains onto the replica's
  // position; only its page size (1024) is not the database's (4096), and it
  // carries one page where a page-size change rewrites the whole database.
  // Were DB.applyTransactions to start a fresh PageChecksums and fold in only
  // the transaction's pages, the post-apply check would pass and the replica
  // would write a 1024-byte page 1 into
  // its 4096-byte database and takes the position: a corrupt database
  // accepted as good. It must refuse: a page-size change rewrites every page.
  test(
    'a chained WAL_SEGMENT that changes the page size without carrying every page is refused',
    async () => {
      try {
        await badInput({
          db: del,
          inject: (good) => {
            const page = Buffer.from(good.image.subarray(0, 1024));
            page[100]! ^= 0xff; // page 1's b-tree page type: accepting it visibly damages the database
            const tx = {
              ...good.tx, pageSize: 1024, commitSize: good.image.length / 1024, pages: [{ pgno: 1, data: page }],
              postApplyChecksum: databaseChecksum([[1, page]], 1024),
            };
            fake.send(walSegmentRecord(del.name, [segmentFile(tx, encodeTransaction(tx, { compress: false }))]));
          },
          reason: /replication stream ended: .*page size/,
        });
      } catch (err) {
        const check = await sqlite3(mounted(del), 'PRAGMA integrity_check;');
        throw new Error(
          `${(err as Error).message}\n  replica's ${del.name}-pos: ${readPos(del)} (source at ${del.position})\n` +
            `  integrity_check: ${(check.stdout + check.stderr).trim().split('\n').slice(0, 3).join(' | ')}`,
        );
      }
    },
  );

  // Not bad input: a batch only a crafted stream delivers at will. A switch
  // into WAL mode writes page 1; the WAL-mode commits after it need not. When
  // they arrive in one WAL_SEGMENT, the mode the batch leaves is the one its
  // last page 1 says, not the last transaction's (which has none): otherwise
  // the replica keeps no -wal, and every new reader of the database fails
  // ("attempt to write a readonly database": SQLite cannot create it).
  test('one WAL_SEGMENT that switches a new database into WAL mode and goes on without page 1: the replica ends in WAL mode', async () => {
    const src = new SourceDb(srcDir, 'switch.db', 'delete');
    src.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);');
    src.exec('PRAGMA journal_mode=wal;');
    for (let i = 0; i < 2; i++) src.exec(ROW(100) + 'PRAGMA wal_checkpoint(TRUNCATE);');
    assert.equal(src.history[1]!.tx.pages[0]?.pgno, 1, 'the switch writes page 1');
    assert.ok(src.history.slice(2).every((t) => t.tx.pages.every((p) => p.pgno !== 1)), 'the commits after it do not');
    await waitFor('a connection to the fake primary', () => fake.connected);
    fake.send(src.segment(0)); // TXIDs 1..4, one apply
    sources.push(src);
    await waitFor(`${src.name} at ${src.position}`, () => readPos(src) === src.position);
    assert.ok(fs.existsSync(`${mounted(src)}-wal`), 'the replica\'s -wal exists');
    assert.equal(await rows(src), 2);
    assert.equal(mountedSha(src), src.sha256);
    await integrityOk(src);
  });
});
