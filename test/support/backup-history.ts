// A real database history for backup tests, and a bucket to lay it out in.
//
// buildHistory runs SQL steps through better-sqlite3, one commit each, and
// diffs the file page by page against the one before into a transaction
// file, so every TXID has both its exact image (to compare restores with)
// and the transaction that produced it (to upload). BackupBucket writes
// snapshot and segment objects of such a history to a DirectoryObjectStore,
// with each file's mtime set to a chosen upload time: that is the listing's
// lastModified, which restores by timestamp and retention go by.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

import { DirectoryObjectStore } from '../../src/backup/directory.js';
import { BackupLayout, newGenerationId } from '../../src/backup/layout.js';
import { encodeSegmentObject, encodeSnapshotObject } from '../../src/backup/objects.js';
import { memoryImagePages } from '../../src/store/image-read.js';
import { decodePageSize, lockPageNumber } from '../../src/sqlite/dbheader.js';
import { PageChecksums } from '../../src/txlog/checksum.js';
import { imageChecksum } from './fake-primary.js';
import { encodeTransaction, type SegmentFile, type TransactionFile } from '../../src/txlog/txfile.js';

/** The database name every object of these histories carries. */
export const DB = 'app.db';
/** The history's epoch: TXID n commits at commitTime(n), after it. */
export const T0 = Date.UTC(2024, 0, 1);
/** Ten seconds apart; objects go up a second after their last commit (whole seconds: utimes keeps them exact). */
export const commitTime = (txid: number): number => T0 + txid * 10_000;
export const uploadTime = (txid: number): number => commitTime(txid) + 1000;

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A database's history: the file after each TXID and the transaction that got there (index = TXID; index 0 is the empty file). */
export interface History {
  /** The page size after each TXID (index 0: the one asked for). */
  pageSizes: number[];
  images: Buffer[];
  txs: TransactionFile[];
  /** The transactions as lz4 transaction files, ready for a segment object. */
  files: SegmentFile[];
  times: number[];
}

/** A transaction as the lz4 file a segment object holds. */
export function segmentFile(tx: TransactionFile): SegmentFile {
  const bytes = encodeTransaction(tx, { compress: true });
  return { bytes, minTxid: tx.minTxid, maxTxid: tx.maxTxid, preApplyChecksum: tx.preApplyChecksum, postApplyChecksum: tx.postApplyChecksum, pageSize: tx.pageSize, commitSize: tx.commitSize };
}

/**
 * Runs each step as one commit and turns the file's changed pages into a
 * transaction, TXID 1 first. The database file is created in `dir` (named
 * after the journal mode, so one directory can hold one history of each).
 */
export function buildHistory(dir: string, opts: { wal: boolean; pageSize: number }, steps: string[]): History {
  const file = path.join(dir, `history-${opts.wal ? 'wal' : 'delete'}.db`);
  const conn = new Database(file);
  conn.pragma(`page_size = ${opts.pageSize}`);
  conn.pragma(`journal_mode = ${opts.wal ? 'wal' : 'delete'}`);
  const h: History = { pageSizes: [opts.pageSize], images: [Buffer.alloc(0)], txs: [undefined!], files: [undefined!], times: [T0] };
  let sums = new PageChecksums(opts.pageSize);
  for (const sql of steps) {
    conn.exec(sql);
    if (opts.wal) conn.pragma('wal_checkpoint(TRUNCATE)'); // so the main file holds the commit
    const image = fs.readFileSync(file);
    const prev = h.images[h.images.length - 1]!;
    const txid = h.images.length;
    const pre = txid === 1 ? 0n : sums.checksum;
    const pageSize = decodePageSize(image.readUInt16BE(16));
    // A VACUUM to another page size rewrites every page: the transaction holds them all.
    const resized = pageSize !== h.pageSizes[txid - 1];
    if (resized) sums = new PageChecksums(pageSize);
    const lockPage = lockPageNumber(pageSize);
    const commitSize = image.length / pageSize;
    const pages = [];
    for (let pgno = 1; pgno <= commitSize; pgno++) {
      const page = image.subarray((pgno - 1) * pageSize, pgno * pageSize);
      if (pgno === lockPage || (!resized && page.equals(prev.subarray((pgno - 1) * pageSize, pgno * pageSize)))) continue;
      pages.push({ pgno, data: Buffer.from(page) });
      sums.set(pgno, page);
    }
    sums.truncate(commitSize);
    assert.equal(sums.checksum, imageChecksum(image, pageSize));
    const tx: TransactionFile = {
      pageSize, commitSize, minTxid: txid, maxTxid: txid, timestamp: commitTime(txid), preApplyChecksum: pre,
      postApplyChecksum: sums.checksum, nodeId: 1n, walSalt1: 0, walSalt2: 0, walFrameEnd: 0, pages,
    };
    h.pageSizes.push(pageSize);
    h.images.push(image);
    h.txs.push(tx);
    h.files.push(segmentFile(tx));
    h.times.push(tx.timestamp);
  }
  conn.close();
  return h;
}

/** SQL inserting `n` rows of about `len` characters into t(v): a step that touches many pages. */
export const filler = (n: number, len: number): string =>
  `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${n}) INSERT INTO t(v) SELECT printf('%.${len}c', char(65 + i % 26)) || i FROM c;`;

/** XORs one byte of a file: a corrupt object that keeps its length. */
export function flipByte(file: string, at: number): void {
  const bytes = fs.readFileSync(file);
  bytes[at] ^= 0x55;
  fs.writeFileSync(file, bytes);
}

/**
 * One generation of `DB`'s backup in a bucket directory, with helpers to lay
 * objects out in it. Several generations share a bucket through generation().
 */
export class BackupBucket {
  readonly store: DirectoryObjectStore;
  readonly layout = new BackupLayout('backups');

  constructor(
    readonly h: History,
    readonly dir: string,
    readonly gen = newGenerationId(T0),
  ) {
    this.store = new DirectoryObjectStore(dir);
  }

  /** A bucket of its own: a new directory under `scratch`. */
  static inside(scratch: string, h: History, gen?: string): BackupBucket {
    return new BackupBucket(h, fs.mkdtempSync(path.join(scratch, 'bucket-')), gen);
  }

  /** Another generation in the same bucket. */
  generation(gen: string): BackupBucket {
    return new BackupBucket(this.h, this.dir, gen);
  }

  /** Writes an object and sets its lastModified. */
  async put(key: string, bytes: Buffer, uploadedAt: number): Promise<string> {
    await this.store.put(key, bytes);
    this.setModified(key, uploadedAt);
    return key;
  }

  /** The listing's lastModified of `key` becomes `at` (the file's mtime). */
  setModified(key: string, at: number): void {
    fs.utimesSync(this.path(key), new Date(at), new Date(at));
  }

  async snapshot(txid: number, uploadedAt = uploadTime(txid)): Promise<string> {
    const { images, times } = this.h;
    const pageSize = this.h.pageSizes[txid]!;
    const pages = memoryImagePages(images[txid]!, pageSize);
    const image = { pages, txid, checksum: imageChecksum(images[txid]!, pageSize), pageSize, commitSize: pages.commitSize, timestamp: times[txid]! };
    return this.put(this.layout.snapshotKey(DB, this.gen, txid), await encodeSnapshotObject(DB, image), uploadedAt);
  }

  segment(min: number, max: number, files = this.h.files.slice(min, max + 1), uploadedAt = uploadTime(max)): Promise<string> {
    return this.put(this.layout.segmentKey(DB, this.gen, min, max), encodeSegmentObject(DB, files), uploadedAt);
  }

  /** A snapshot at `snapshotAt` and one segment per later transaction of the history. */
  async standard(snapshotAt = 1): Promise<void> {
    await this.snapshot(snapshotAt);
    for (let txid = snapshotAt + 1; txid < this.h.images.length; txid++) await this.segment(txid, txid);
  }

  /** The file behind `key`. */
  path(key: string): string {
    return path.join(this.dir, key);
  }
}
