// Startup recovery of one database, before the mount serves it:
// 1. a hot rollback journal is rolled back (by SQLite itself);
// 2. the log is checked file by file and chain link by chain link; a broken
//    tail is moved aside (kept, never deleted) and reported;
// 3. the database's logical state (file + WAL up to the last logged commit)
//    is compared with the log's position; a mismatch (the file was changed
//    outside litefs, or the log lost its tail) is repaired by recording the
//    current state as one full transaction, and reported;
// 4. WAL transactions committed after the last logged one (the log is made
//    durable lazily, DESIGN.md step 4) are re-derived from the WAL's
//    checksummed frames.
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { isLiveJournalHeader } from '../sqlite/journal.js';
import { WAL_HEADER_SIZE, walFrameOffset, walTransactionEnd } from '../sqlite/wal.js';
import { verifyChain, type TransactionFile } from '../txlog/txfile.js';
import { formatPosition } from '../txlog/checksum.js';
import type { DB } from './db.js';
import type { Role } from './types.js';
import { STAGE_LIMIT } from './apply.js';
import type { Logger } from '../log.js';
import { allPages, applyWalTransaction, databaseFileInfo, fileState, scanWal, type FileState } from './pages.js';

export function hasHotJournal(file: string): boolean {
  try {
    const fd = fs.openSync(file + '-journal', 'r');
    try {
      const head = Buffer.alloc(28);
      return fs.readSync(fd, head, 0, 28, 0) === 28 && isLiveJournalHeader(head);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** Lets SQLite roll the hot journal back: it does so when it first reads the database (the backing file, not the mount). */
export function rollBackHotJournal(file: string): void {
  const conn = new Database(file);
  try {
    conn.prepare('SELECT count(*) FROM sqlite_master').get();
  } finally {
    conn.close();
  }
}

/** Reads and checks the log; returns its last transaction, after moving any damaged tail aside. */
function checkLog(db: DB, log: Logger): TransactionFile | undefined {
  let last: TransactionFile | undefined;
  const { damaged } = db.log.scan((tx) => {
    if (last) verifyChain(last, tx);
    last = tx;
  });
  if (damaged) {
    const moved = db.log.quarantine(damaged.entry, damaged.reason);
    log.error({ db: db.name, movedTo: moved }, `transaction log damaged: ${damaged.reason}; the damaged tail was moved aside`);
    // `last` may be the record that failed its chain check: take the log's.
    const entry = db.log.last;
    last = entry ? db.log.read(entry) : undefined;
  }
  return last;
}

/**
 * Replicas only (their files are the daemon's alone; a primary's changed
 * file must not be written over). A replica logs a batch of transactions
 * before it writes their pages; killed in between, it leaves the file at
 * the state before them, or part way. Writing again, in order, the pages
 * of the logged transactions after the last one noted as applied (at most
 * STAGE_LIMIT) completes it from any of those states. True when that made
 * the file match the log.
 */
function redoLogged(db: DB, last: TransactionFile, state: FileState): boolean {
  const applied = db.log.applied() ?? 0;
  const redo = db.log.entriesAfter(applied, STAGE_LIMIT);
  if (redo.length === 0 || last.pageSize !== state.pageSize) return false;
  const fd = fs.openSync(db.file, 'r+');
  try {
    for (const entry of redo) {
      const tx = db.log.read(entry);
      for (const page of tx.pages) fs.writeSync(fd, page.data, 0, page.data.length, (page.pgno - 1) * tx.pageSize);
      fs.ftruncateSync(fd, tx.commitSize * tx.pageSize);
    }
  } finally {
    fs.closeSync(fd);
  }
  const after = fileState(db.file);
  return after?.checksums.checksum === last.postApplyChecksum;
}

/** The log's last transaction, or where a reset log starts (a replica's snapshot). */
function logPosition(db: DB, log: Logger): TransactionFile | undefined {
  const last = checkLog(db, log);
  if (last) return last;
  const base = db.log.base();
  if (!base) return undefined;
  return { ...base, minTxid: base.txid, maxTxid: base.txid, preApplyChecksum: 0n, postApplyChecksum: base.checksum, nodeId: 0n, walSalt1: 0, walSalt2: 0, walFrameEnd: 0, pages: [] };
}

/**
 * Recovers one database. Where the files do not match the log, a primary
 * records their state as a full transaction; a replica leaves the database
 * in doubt (DB.doubt), so the primary sends it a snapshot.
 */
export function recoverDatabase(db: DB, log: Logger, role: Role = 'primary'): void {
  // SQLite ignores a rollback journal in WAL mode.
  if (hasHotJournal(db.file) && databaseFileInfo(db.file)?.head.readUInt8(18) !== 2) {
    rollBackHotJournal(db.file);
    log.warn({ db: db.name }, 'rolled back a hot journal left by a crash');
  }
  const last = logPosition(db, log);
  let state: FileState | undefined = fileState(db.file);
  const scan = state ? scanWal(db.walFile, state.pageSize) : undefined;
  const pageSize = state?.pageSize ?? 0;
  const sameWal = scan && last && scan.header.salt1 === last.walSalt1 && scan.header.salt2 === last.walSalt2;
  const logged = sameWal ? scan.transactions.filter((tx) => walTransactionEnd(tx, pageSize) <= last.walFrameEnd) : [];
  const later = scan ? scan.transactions.slice(logged.length) : [];
  if (state) for (const tx of logged) applyWalTransaction(state, tx);

  db.restore({
    txid: last?.maxTxid ?? 0,
    pageSize: last?.pageSize ?? state?.pageSize ?? 0,
    commitSize: last?.commitSize ?? 0,
    checksums: last && state && last.pageSize === state.pageSize ? state.checksums : undefined,
    lastCommit: new Date(last?.timestamp ?? 0),
    checksum: last?.postApplyChecksum ?? 0n,
  });

  if (state) {
    const expected = last ? last.postApplyChecksum : undefined;
    let mismatch = expected !== state.checksums.checksum || last?.commitSize !== state.commitSize;
    if (mismatch && role === 'replica' && last && !scan?.transactions.length && redoLogged(db, last, state)) {
      log.warn({ db: db.name, txid: last.maxTxid }, 'wrote the pages of the last logged transactions again (a stop part way through applying them)');
      state = fileState(db.file)!;
      db.restore({ txid: last.maxTxid, pageSize: last.pageSize, commitSize: last.commitSize, checksums: state.checksums, lastCommit: new Date(last.timestamp), checksum: last.postApplyChecksum });
      mismatch = false;
    }
    if (mismatch && role === 'replica') {
      db.doubt = last
        ? `database does not match its transaction log at ${formatPosition(last.maxTxid, last.postApplyChecksum)} (changed outside litefs, or a stop part way through applying)`
        : 'database has no transaction log';
      log.warn({ db: db.name }, `${db.doubt}; it will be replaced by a snapshot from the primary`);
      db.log.sync();
      return;
    }
    if (mismatch) {
      const full = allPages(db.file, db.walFile, logged.length ? walTransactionEnd(logged[logged.length - 1]!, pageSize) : WAL_HEADER_SIZE);
      if (full) {
        db.recordFullState(full.pages, full.pageSize, full.commitSize);
        if (last) {
          log.warn(
            { db: db.name, log: formatPosition(last.maxTxid, last.postApplyChecksum), recorded: formatPosition(db.txid, db.position.checksum) },
            'database does not match its transaction log (a commit whose record was cut short by a crash, or a change made outside litefs); recorded its current state as a full transaction',
          );
        } else {
          log.info({ db: db.name, txid: db.txid, pages: full.commitSize }, 'recorded an existing database as its first transaction');
        }
      }
    }
  } else if (last) {
    if (role === 'replica') db.doubt = 'database file is missing or empty but has a transaction log';
    log.warn({ db: db.name, txid: last.maxTxid }, 'database file is missing or empty but has a transaction log');
  }

  for (const tx of later) db.recordWalTransaction(tx, scan!.header.pageSize, scan!.header.salt1, scan!.header.salt2);
  if (later.length) log.info({ db: db.name, count: later.length, txid: db.txid }, 're-derived transactions from the WAL');
  db.log.sync();
  if (scan) {
    db.setWalCursor({
      salt1: scan.header.salt1,
      salt2: scan.header.salt2,
      frameEnd: walFrameOffset(scan.committedFrameEnd, pageSize),
      seed: scan.checksum,
    });
  }
}
