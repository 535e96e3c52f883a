// Checks src/sqlite against files written by the real sqlite3 CLI.
//
// Crash states come from feeding a sqlite3 process statements on stdin, waiting
// for a printed marker (so every statement before it has run), then SIGKILLing
// it so the -wal, -shm or -journal stay exactly as SQLite left them.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { isSqliteHeader, isWalModeHeader, lockPageNumber, parseDbHeader, PENDING_BYTE } from '../../src/sqlite/dbheader.js';
import {
  encodeWal, parseWalHeader, readWalFrames, walChecksum, walFrameOffset, walHeaderProblem,
  WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
} from '../../src/sqlite/wal.js';
import {
  parseShmHeader, READMARK_NOT_USED, resetWalIndexHeader, SHM_HEADER_SIZE, walIndexHeaderChecksum,
  WAL_DMS_LOCK, WAL_READ_LOCK, WAL_WRITE_LOCK, SHARED_FIRST, RESERVED_BYTE,
} from '../../src/sqlite/shm.js';
import { isLiveJournalHeader, journalRecordSize, parseJournalHeader } from '../../src/sqlite/journal.js';

const SQLITE3 = '/usr/bin/sqlite3';

// Temp dirs and processes this file started; all removed or killed (by pid) at the end.
const tempDirs: string[] = [];
const liveProcesses = new Set<ChildProcessWithoutNullStreams>();

function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sqlite-format-test-'));
  tempDirs.push(dir);
  return dir;
}

after(() => {
  for (const proc of liveProcesses) {
    try { if (proc.pid !== undefined && proc.exitCode === null) process.kill(proc.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** Run SQL in a short-lived sqlite3 process; returns its stdout. */
function sqlite(db: string, sql: string): string {
  return execFileSync(SQLITE3, ['-batch', db], { input: sql, encoding: 'utf8' });
}

/** A long-lived sqlite3 process driven through stdin. */
class SqliteSession {
  private readonly proc: ChildProcessWithoutNullStreams;
  private stdout = '';
  private stderr = '';
  private markers = 0;
  private readonly exited: Promise<void>;

  constructor(db: string) {
    this.proc = spawn(SQLITE3, ['-batch', db]);
    liveProcesses.add(this.proc);
    this.proc.stdout.setEncoding('utf8').on('data', (chunk: string) => { this.stdout += chunk; });
    this.proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk; });
    this.exited = new Promise((resolve) => this.proc.once('exit', () => { liveProcesses.delete(this.proc); resolve(); }));
  }

  /** Send SQL, wait until it has all run, and return what it printed. */
  async run(sql: string): Promise<string> {
    const marker = `@@done-${++this.markers}@@`;
    const start = this.stdout.length;
    this.proc.stdin.write(`${sql}\nSELECT '${marker}';\n`);
    const deadline = Date.now() + 10_000;
    while (!this.stdout.includes(marker, start)) {
      if (this.proc.exitCode !== null) throw new Error(`sqlite3 exited: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`sqlite3 timed out; stderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.stderr !== '') throw new Error(`sqlite3 error: ${this.stderr}`);
    return this.stdout.slice(start, this.stdout.indexOf(marker, start)).trim();
  }

  /** SIGKILL this process (by its own pid) and wait for it to be gone. */
  async kill(): Promise<void> {
    if (this.proc.pid !== undefined && this.proc.exitCode === null) process.kill(this.proc.pid, 'SIGKILL');
    await this.exited;
  }

  async close(): Promise<void> {
    this.proc.stdin.end();
    await this.exited;
  }
}

function flipByte(buf: Buffer, offset: number): void {
  buf.writeUInt8(buf.readUInt8(offset) ^ 0xff, offset);
}

const BULK_INSERT_200_ROWS =
  'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<200) INSERT INTO t SELECT randomblob(3000) FROM c;';

/**
 * A WAL-mode database whose writer was killed after 5 committed transactions
 * (one of them multi-page) and in the middle of a 6th that had spilled
 * uncommitted frames into the WAL.
 */
async function crashedWalDatabase(): Promise<{ dir: string; db: string }> {
  const dir = makeTempDir();
  const db = join(dir, 'db');
  const writer = new SqliteSession(db);
  await writer.run('PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;');
  await writer.run('CREATE TABLE t(x);'); // tx 1
  await writer.run("INSERT INTO t VALUES('one');"); // tx 2
  await writer.run("INSERT INTO t VALUES('two');"); // tx 3
  await writer.run('INSERT INTO t VALUES(randomblob(20000));'); // tx 4: overflow pages
  await writer.run("BEGIN; INSERT INTO t VALUES('a'); INSERT INTO t VALUES('b'); COMMIT;"); // tx 5
  // A small cache forces SQLite to spill this uncommitted transaction into the WAL.
  await writer.run(`PRAGMA cache_size=5; BEGIN; ${BULK_INSERT_200_ROWS}`);
  await writer.kill();
  return { dir, db };
}

describe('database header', () => {
  test('parses rollback, WAL and 64 KiB-page databases written by sqlite3', () => {
    const dir = makeTempDir();
    const legacy = join(dir, 'legacy.db');
    sqlite(legacy, 'PRAGMA page_size=1024; CREATE TABLE t(x); INSERT INTO t VALUES(randomblob(5000));');
    const legacyBytes = readFileSync(legacy);
    assert.ok(isSqliteHeader(legacyBytes));
    const h = parseDbHeader(legacyBytes);
    assert.equal(h.pageSize, 1024);
    assert.equal(h.writeVersion, 1);
    assert.equal(h.readVersion, 1);
    assert.equal(isWalModeHeader(h), false);
    assert.equal(h.pageCount, legacyBytes.length / 1024);
    assert.ok(h.pageCountValid);
    assert.equal(h.versionValidFor, h.fileChangeCounter);
    assert.ok(h.fileChangeCounter >= 2, 'two commits happened');
    assert.equal(Math.floor(h.sqliteVersion / 1_000_000), 3);

    const walDb = join(dir, 'wal.db');
    sqlite(walDb, 'PRAGMA journal_mode=wal; CREATE TABLE t(x);');
    const w = parseDbHeader(readFileSync(walDb));
    assert.equal(w.writeVersion, 2);
    assert.equal(w.readVersion, 2);
    assert.ok(isWalModeHeader(w));

    const bigPages = join(dir, 'big.db');
    sqlite(bigPages, 'PRAGMA page_size=65536; CREATE TABLE t(x);');
    const bigBytes = readFileSync(bigPages);
    assert.equal(bigBytes.readUInt16BE(16), 1, 'SQLite stores 65536 as 1');
    assert.equal(parseDbHeader(bigBytes).pageSize, 65536);
  });

  test('rejects non-databases and computes the lock page', () => {
    assert.equal(isSqliteHeader(Buffer.from('SQLite format 3')), false);
    assert.equal(isSqliteHeader(Buffer.alloc(100)), false);
    assert.throws(() => parseDbHeader(Buffer.alloc(100)));
    assert.throws(() => parseDbHeader(Buffer.alloc(50)));
    assert.equal(lockPageNumber(4096), 262145);
    assert.equal(lockPageNumber(512), 2097153);
    assert.equal(lockPageNumber(65536), 16385);
    // The lock page's byte range contains PENDING_BYTE for every page size.
    for (const size of [512, 1024, 4096, 65536]) {
      const start = (lockPageNumber(size) - 1) * size;
      assert.ok(start <= PENDING_BYTE && PENDING_BYTE < start + size);
    }
  });
});

describe('WAL', () => {
  test('checksum chains: one pass equals two passes seeded by the first', () => {
    const data = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff));
    for (const bigEndian of [false, true]) {
      const whole = walChecksum(data, bigEndian);
      const split = walChecksum(data.subarray(24), bigEndian, walChecksum(data.subarray(0, 24), bigEndian));
      assert.deepEqual(split, whole);
    }
    assert.notDeepEqual(walChecksum(data, false), walChecksum(data, true));
    assert.throws(() => walChecksum(Buffer.alloc(12), false));
  });

  test('finds the committed transactions of a crashed writer, and the shm agrees', async () => {
    const { db } = await crashedWalDatabase();
    const wal = readFileSync(`${db}-wal`);
    const header = parseWalHeader(wal);
    assert.equal(walHeaderProblem(wal), undefined);
    assert.equal(header.pageSize, 4096);
    assert.equal(header.magic & 0xfffffffe, 0x377f0682);

    const scan = readWalFrames(wal);
    assert.equal(scan.transactions.length, 5);
    assert.ok(scan.transactions[3]!.frames.length >= 5, 'the 20 KB blob spans several pages');
    for (const tx of scan.transactions) {
      assert.ok(tx.commitSize > 0);
      assert.equal(tx.frames.at(-1)!.commitSize, tx.commitSize);
      assert.ok(tx.frames.slice(0, -1).every((f) => f.commitSize === 0));
    }
    // The spilled, uncommitted tail is valid but belongs to no transaction.
    assert.ok(scan.validFrameEnd > scan.committedFrameEnd, 'uncommitted frames were spilled');
    const lastTx = scan.transactions.at(-1)!;
    assert.equal(scan.committedFrameEnd, lastTx.firstFrame + lastTx.frames.length);
    assert.deepEqual(scan.checksum, lastTx.checksum);
    assert.equal(walFrameOffset(0, 4096), WAL_HEADER_SIZE);
    assert.equal(wal.length % (4096 + WAL_FRAME_HEADER_SIZE), WAL_HEADER_SIZE);

    // Resuming from a transaction boundary gives the same later transactions.
    const resumed = readWalFrames(wal, scan.transactions[2]!.firstFrame);
    assert.deepEqual(resumed.transactions.map((t) => t.checksum), scan.transactions.slice(2).map((t) => t.checksum));

    const shm = parseShmHeader(readFileSync(`${db}-shm`));
    assert.ok(shm.valid && shm.copiesIdentical && shm.first.checksumValid);
    assert.equal(shm.first.version, 3007000);
    assert.equal(shm.first.mxFrame, scan.committedFrameEnd, 'shm counts committed frames only');
    assert.equal(shm.first.pageSize, 4096);
    assert.equal(shm.first.nPage, lastTx.commitSize);
    assert.deepEqual(shm.first.frameChecksum, lastTx.checksum);
    assert.equal(shm.first.salt1, header.salt1);
    assert.equal(shm.first.salt2, header.salt2);
    assert.equal(shm.first.bigEndianChecksum, header.bigEndianChecksum);

    // SQLite's own recovery agrees: 5 rows, and the page count of the last commit.
    assert.equal(sqlite(db, 'SELECT count(*) FROM t; PRAGMA page_count;'), `5\n${lastTx.commitSize}\n`);
  });

  test('stops at the first bad frame', async () => {
    const { db } = await crashedWalDatabase();
    const wal = readFileSync(`${db}-wal`);
    const good = readWalFrames(wal);
    const third = good.transactions[2]!;
    const thirdOffset = walFrameOffset(third.firstFrame, 4096);

    const corrupt = Buffer.from(wal);
    flipByte(corrupt, thirdOffset + WAL_FRAME_HEADER_SIZE + 100);
    const c = readWalFrames(corrupt);
    assert.equal(c.stop, 'checksum-mismatch');
    assert.equal(c.transactions.length, 2);
    assert.equal(c.validFrameEnd, third.firstFrame);
    assert.equal(c.committedFrameEnd, third.firstFrame);

    const stale = Buffer.from(wal);
    stale.writeUInt32BE((stale.readUInt32BE(thirdOffset + 8) + 1) >>> 0, thirdOffset + 8);
    assert.equal(readWalFrames(stale).stop, 'salt-mismatch');
    assert.equal(readWalFrames(stale).transactions.length, 2);

    const torn = wal.subarray(0, thirdOffset + 1000);
    assert.equal(readWalFrames(torn).stop, 'partial-frame');
    assert.equal(readWalFrames(torn).transactions.length, 2);

    const badHeader = Buffer.from(wal);
    flipByte(badHeader, 20); // salt2 no longer matches the header checksum
    assert.match(walHeaderProblem(badHeader) ?? '', /checksum/);
    assert.throws(() => readWalFrames(badHeader), /checksum/);
  });

  test('encodeWal reproduces SQLite byte for byte, and SQLite accepts big-endian checksums', async () => {
    const { db } = await crashedWalDatabase();
    const wal = readFileSync(`${db}-wal`);
    const header = parseWalHeader(wal);
    const scan = readWalFrames(wal);
    const frames = scan.transactions.flatMap((tx) => tx.frames).map((f) => ({
      pgno: f.pgno, commitSize: f.commitSize, data: Buffer.from(f.data),
    }));

    const same = encodeWal(header.pageSize, header, frames, { checkpointSeq: header.checkpointSeq });
    assert.ok(same.equals(wal.subarray(0, walFrameOffset(scan.committedFrameEnd, 4096))));

    // Re-encode with other salts and big-endian checksums, drop the -shm, and
    // let SQLite rebuild its index from our WAL.
    const bigEndian = encodeWal(4096, { salt1: 0xdeadbeef, salt2: 0x01020304 }, frames, { bigEndianChecksum: true });
    assert.equal(bigEndian.readUInt32BE(0), 0x377f0683);
    assert.equal(readWalFrames(bigEndian).transactions.length, 5);
    writeFileSync(`${db}-wal`, bigEndian);
    unlinkSync(`${db}-shm`);
    assert.equal(sqlite(db, "SELECT count(*) FROM t; SELECT group_concat(x) FROM t WHERE typeof(x)='text';"), '5\none,two,a,b\n');
  });

  test('frames after the last commit frame form no transaction', () => {
    const page = (fill: number) => Buffer.alloc(1024, fill);
    const wal = encodeWal(1024, { salt1: 1, salt2: 2 }, [
      { pgno: 1, data: page(1) },
      { pgno: 2, data: page(2), commitSize: 2 },
      { pgno: 3, data: page(3) },
    ]);
    const scan = readWalFrames(wal);
    assert.equal(scan.transactions.length, 1);
    assert.deepEqual(scan.transactions[0]!.frames.map((f) => f.pgno), [1, 2]);
    assert.equal(scan.committedFrameEnd, 2);
    assert.equal(scan.validFrameEnd, 3);
    assert.equal(scan.stop, 'end');
  });
});

describe('shm', () => {
  test('lock byte offsets', () => {
    assert.equal(WAL_WRITE_LOCK, 120);
    assert.equal(WAL_READ_LOCK(0), 123);
    assert.equal(WAL_READ_LOCK(4), 127);
    assert.throws(() => WAL_READ_LOCK(5));
    assert.equal(WAL_DMS_LOCK, 128);
    assert.equal(RESERVED_BYTE, 0x40000001);
    assert.equal(SHARED_FIRST, 0x40000002);
  });

  test('resetWalIndexHeader makes a long-lived reader see a rewritten database file', async () => {
    const db = join(makeTempDir(), 'db');
    sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES('old');");
    const reader = new SqliteSession(db);
    assert.equal(await reader.run('SELECT group_concat(x) FROM t;'), 'old');
    // The reader keeps the -shm alive after this writer exits.
    sqlite(db, "INSERT INTO t VALUES('old2'); PRAGMA wal_checkpoint(TRUNCATE);");
    assert.equal(statSync(`${db}-wal`).size, 0);
    assert.equal(await reader.run('SELECT group_concat(x) FROM t;'), 'old,old2');

    const shmBefore = readFileSync(`${db}-shm`).subarray(0, SHM_HEADER_SIZE);
    const before = parseShmHeader(shmBefore);
    assert.ok(before.valid);

    // The "new" database: a copy of this one changed by another process.
    const other = join(makeTempDir(), 'db');
    copyFileSync(db, other);
    sqlite(other, "UPDATE t SET x = x || '-new';");
    assert.ok(!existsSync(`${other}-wal`), 'checkpointed into the file on close');
    const newBytes = readFileSync(other);
    const nPage = newBytes.length / 4096;

    // Replace the database file in place (same inode, as a replica would).
    writeFileSync(db, newBytes);
    // Control: the reader still holds pages from before and sees old rows.
    assert.equal(await reader.run('SELECT group_concat(x) FROM t;'), 'old,old2');

    const reset = resetWalIndexHeader(shmBefore, nPage, 4096);
    assert.equal(reset.length, SHM_HEADER_SIZE);
    const resetHeader = parseShmHeader(reset);
    assert.ok(resetHeader.valid && resetHeader.copiesIdentical);
    assert.deepEqual(walIndexHeaderChecksum(reset.subarray(0, 48)), resetHeader.first.checksum);
    assert.equal(resetHeader.first.change, before.first.change + 1);
    assert.equal(resetHeader.first.mxFrame, 0);
    assert.equal(resetHeader.first.nPage, nPage);
    assert.equal(resetHeader.first.pageSize, 4096);
    assert.equal(resetHeader.first.salt1, before.first.salt1);
    assert.equal(resetHeader.first.salt2, before.first.salt2);
    assert.deepEqual(resetHeader.first.frameChecksum, before.first.frameChecksum);
    assert.equal(resetHeader.checkpoint.nBackfill, 0);
    assert.equal(resetHeader.checkpoint.nBackfillAttempted, 0);
    assert.deepEqual(resetHeader.checkpoint.readMarks, [0, READMARK_NOT_USED, READMARK_NOT_USED, READMARK_NOT_USED, READMARK_NOT_USED]);

    const fd = openSync(`${db}-shm`, 'r+');
    try { writeSync(fd, reset, 0, reset.length, 0); } finally { closeSync(fd); }
    assert.equal(await reader.run('SELECT group_concat(x) FROM t;'), 'old-new,old2-new');
    // A new connection reads it, and a new writer can append to the WAL again.
    assert.equal(sqlite(db, "PRAGMA integrity_check; INSERT INTO t VALUES('after');"), 'ok\n');
    assert.equal(await reader.run('SELECT group_concat(x) FROM t;'), 'old-new,old2-new,after');
    await reader.close();
  });

  test('resetWalIndexHeader on an empty -shm still yields a valid header', () => {
    const reset = resetWalIndexHeader(Buffer.alloc(0), 3, 65536);
    const h = parseShmHeader(reset);
    assert.ok(h.valid);
    assert.equal(h.first.pageSize, 65536);
    assert.equal(h.first.change, 1);
    assert.equal(h.first.nPage, 3);
  });
});

describe('rollback journal', () => {
  test('a committed PERSIST journal has a zeroed header', () => {
    const db = join(makeTempDir(), 'db');
    sqlite(db, 'PRAGMA journal_mode=persist; CREATE TABLE t(x); INSERT INTO t VALUES(1);');
    const journal = readFileSync(`${db}-journal`);
    assert.ok(journal.length > 0, 'PERSIST keeps the file');
    assert.equal(isLiveJournalHeader(journal), false);
    assert.equal(parseJournalHeader(journal), undefined);
    assert.ok(journal.subarray(0, 28).equals(Buffer.alloc(28)));
  });

  test('the hot journal of a killed writer parses, and SQLite rolls it back', async () => {
    const db = join(makeTempDir(), 'db');
    const writer = new SqliteSession(db);
    await writer.run("PRAGMA journal_mode=persist; CREATE TABLE t(x); INSERT INTO t VALUES('kept');");
    const pagesBefore = Number(await writer.run('PRAGMA page_count;'));
    // A small cache makes SQLite sync the journal and write the db file mid-transaction.
    await writer.run(`PRAGMA cache_size=5; BEGIN; ${BULK_INSERT_200_ROWS}`);
    await writer.kill();

    const journal = readFileSync(`${db}-journal`);
    assert.ok(isLiveJournalHeader(journal));
    const h = parseJournalHeader(journal);
    assert.ok(h !== undefined);
    assert.equal(h.pageSize, 4096);
    assert.equal(h.initialPageCount, pagesBefore);
    assert.ok(h.sectorSize >= 512 && (h.sectorSize & (h.sectorSize - 1)) === 0);
    assert.ok(h.recordCount > 0);
    assert.ok(journal.length >= h.sectorSize + h.recordCount * journalRecordSize(h.pageSize));
    assert.ok(statSync(db).size > pagesBefore * 4096, 'the db file was written before the crash');

    assert.equal(sqlite(db, 'SELECT group_concat(x) FROM t; PRAGMA page_count;'), `kept\n${pagesBefore}\n`);
    // The rolling-back connection (journal_mode DELETE) removes the journal, or zeroes it under PERSIST.
    const journalAfter = `${db}-journal`;
    assert.ok(!existsSync(journalAfter) || !isLiveJournalHeader(readFileSync(journalAfter)), 'journal no longer live');
  });
});
