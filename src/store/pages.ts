// Reading a database's logical pages from its files: the database file,
// overlaid with the committed transactions of its WAL.
import fs from 'node:fs';
import { decodePageSize, isSqliteHeader, isValidPageSize, lockPageNumber } from '../sqlite/dbheader.js';
import { readWalFrames, walTransactionEnd, type WalScan, type WalTransaction } from '../sqlite/wal.js';
import { PageChecksums } from '../txlog/checksum.js';

const CHUNK_PAGES = 256;

/** Reads the given pages (ascending) from an open file, in runs. */
export function readPages(fd: number, pageSize: number, pgnos: number[]): Map<number, Buffer> {
  const pages = new Map<number, Buffer>();
  let i = 0;
  while (i < pgnos.length) {
    let j = i + 1;
    while (j < pgnos.length && pgnos[j] === pgnos[j - 1]! + 1 && j - i < CHUNK_PAGES) j++;
    const buf = Buffer.alloc((j - i) * pageSize);
    const n = fs.readSync(fd, buf, 0, buf.length, (pgnos[i]! - 1) * pageSize);
    for (let k = i; k < j; k++) {
      const off = (k - i) * pageSize;
      // a page past the end of the file reads as zeros, as SQLite sees it
      pages.set(pgnos[k]!, off < n ? buf.subarray(off, off + pageSize) : Buffer.alloc(pageSize));
    }
    i = j;
  }
  return pages;
}

/** A WAL transaction's pages: the last frame of each page wins (views into the scanned buffer). */
export function walPages(tx: WalTransaction): Map<number, Buffer> {
  const pages = new Map<number, Buffer>();
  for (const frame of tx.frames) pages.set(frame.pgno, frame.data);
  return pages;
}

export interface FileState {
  pageSize: number;
  commitSize: number;
  checksums: PageChecksums;
}

export interface DatabaseHeaderInfo {
  head: Buffer; // the first 100 bytes
  pageSize: number;
  pageCount: number;
}

/** Page size and page count from an open database file's header; undefined when it holds no database. */
export function readDatabaseHeader(fd: number): DatabaseHeaderInfo | undefined {
  const head = Buffer.alloc(100);
  const n = fs.readSync(fd, head, 0, 100, 0);
  if (n < 100 || !isSqliteHeader(head)) return undefined;
  const pageSize = decodePageSize(head.readUInt16BE(16));
  if (!isValidPageSize(pageSize)) return undefined;
  return { head, pageSize, pageCount: databaseSize(head, fs.fstatSync(fd).size, pageSize) };
}

export function databaseFileInfo(file: string): DatabaseHeaderInfo | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    return readDatabaseHeader(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Streams every page of the database file through `visit`. */
export function forEachFilePage(file: string, pageSize: number, pageCount: number, visit: (pgno: number, page: Buffer) => void): void {
  const fd = fs.openSync(file, 'r');
  try {
    const lockPage = lockPageNumber(pageSize);
    for (let first = 1; first <= pageCount; first += CHUNK_PAGES) {
      const count = Math.min(CHUNK_PAGES, pageCount - first + 1);
      const buf = Buffer.alloc(count * pageSize);
      fs.readSync(fd, buf, 0, buf.length, (first - 1) * pageSize);
      for (let k = 0; k < count; k++) {
        if (first + k !== lockPage) visit(first + k, buf.subarray(k * pageSize, (k + 1) * pageSize));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The WAL's committed transactions, if it exists and belongs to this page size. */
export function scanWal(walFile: string, pageSize: number): WalScan | undefined {
  let wal: Buffer;
  try {
    wal = fs.readFileSync(walFile);
  } catch {
    return undefined;
  }
  if (wal.length < 32) return undefined;
  try {
    const scan = readWalFrames(wal);
    return scan.header.pageSize === pageSize ? scan : undefined;
  } catch {
    return undefined; // an invalid header: SQLite ignores such a WAL too
  }
}

/** Checksums of the database file alone. */
export function fileState(file: string): FileState | undefined {
  const info = databaseFileInfo(file);
  if (!info) return undefined;
  const checksums = new PageChecksums(info.pageSize);
  forEachFilePage(file, info.pageSize, info.pageCount, (pgno, page) => checksums.set(pgno, page));
  return { pageSize: info.pageSize, commitSize: info.pageCount, checksums };
}

export function applyWalTransaction(state: FileState, tx: WalTransaction): void {
  for (const [pgno, data] of walPages(tx)) if (pgno <= tx.commitSize) state.checksums.set(pgno, data);
  state.checksums.truncate(tx.commitSize);
  state.commitSize = tx.commitSize;
}

/** The WAL's committed transactions that end at or before `walEnd` (all when undefined). */
function walTransactionsUpTo(walFile: string, pageSize: number, walEnd?: number): WalTransaction[] {
  const all = scanWal(walFile, pageSize)?.transactions ?? [];
  return walEnd === undefined ? all : all.filter((tx) => walTransactionEnd(tx, pageSize) <= walEnd);
}

/** The checksum SQLite's view of the database has: the file plus committed WAL frames (up to a byte offset). */
export function logicalChecksum(file: string, walFile: string, walEnd?: number): { checksum: bigint; commitSize: number } {
  const state = fileState(file);
  if (!state) return { checksum: 0n, commitSize: 0 };
  for (const tx of walTransactionsUpTo(walFile, state.pageSize, walEnd)) applyWalTransaction(state, tx);
  return { checksum: state.checksums.checksum, commitSize: state.commitSize };
}

/** Every page of the logical database (for a full-state record). */
export function allPages(file: string, walFile: string, walEnd?: number): { pages: Map<number, Buffer>; pageSize: number; commitSize: number } | undefined {
  const info = databaseFileInfo(file);
  if (!info) return undefined;
  const pages = new Map<number, Buffer>();
  forEachFilePage(file, info.pageSize, info.pageCount, (pgno, page) => pages.set(pgno, Buffer.from(page)));
  let commitSize = info.pageCount;
  for (const tx of walTransactionsUpTo(walFile, info.pageSize, walEnd)) {
    for (const [pgno, data] of walPages(tx)) pages.set(pgno, data);
    commitSize = tx.commitSize;
  }
  for (const pgno of [...pages.keys()]) if (pgno > commitSize) pages.delete(pgno);
  return { pages, pageSize: info.pageSize, commitSize };
}

/** Database size in pages: the header's count when SQLite vouches for it, else the file's. */
export function databaseSize(head: Buffer, fileSize: number, pageSize: number): number {
  const inHeader = head.readUInt32BE(28);
  const valid = inHeader > 0 && head.readUInt32BE(92) === head.readUInt32BE(24);
  return valid ? inHeader : Math.floor(fileSize / pageSize);
}
