// Test helpers over a node's data directory: replaying its transaction log
// into bytes, and reading a database's logical bytes from its files.
import crypto from 'node:crypto';
import path from 'node:path';
import type { TransactionFile } from '../../src/txlog/txfile.js';
import { TransactionLog, type LogEntry } from '../../src/store/txlog-dir.js';
import { allPages } from '../../src/store/pages.js';

/** The transaction files of a database's log, in order, read straight from its segments. */
export function logRecords(dataDir: string, db: string): TransactionFile[] {
  const log = new TransactionLog(path.join(dataDir, 'txlog', db), false);
  const records: TransactionFile[] = [];
  const { damaged } = log.scan((tx) => void records.push(tx));
  if (damaged) throw new Error(damaged.reason);
  return records;
}

/** Where each record sits (segment file, offset, length). */
export function logEntries(dataDir: string, db: string): LogEntry[] {
  const log = new TransactionLog(path.join(dataDir, 'txlog', db), false);
  log.scan(() => undefined);
  return log.list();
}

export function segmentFiles(dataDir: string, db: string): string[] {
  return new TransactionLog(path.join(dataDir, 'txlog', db), false).segments();
}

/** Applies the log's transactions from empty up to `upTo`: the database bytes they describe. */
export function replay(dataDir: string, db: string, upTo = Infinity): { bytes: Buffer; txid: number } {
  let bytes = Buffer.alloc(0);
  let txid = 0;
  for (const tx of logRecords(dataDir, db)) {
    if (tx.maxTxid > upTo) break;
    const size = tx.commitSize * tx.pageSize;
    if (bytes.length !== size) {
      const next = Buffer.alloc(size);
      bytes.copy(next, 0, 0, Math.min(size, bytes.length));
      bytes = next;
    }
    for (const p of tx.pages) p.data.copy(bytes, (p.pgno - 1) * tx.pageSize);
    txid = tx.maxTxid;
  }
  return { bytes, txid };
}

/** The database as SQLite sees it: the file overlaid with the WAL's committed frames. */
export function logicalBytes(dbFile: string): Buffer {
  const state = allPages(dbFile, dbFile + '-wal');
  if (!state) return Buffer.alloc(0);
  const out = Buffer.alloc(state.commitSize * state.pageSize);
  for (const [pgno, data] of state.pages) data.copy(out, (pgno - 1) * state.pageSize);
  return out;
}

export function sha256(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}
