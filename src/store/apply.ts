// How a replica changes one database's files. Pages are written to the
// backing file and then stored into the kernel's page cache of the mounted
// file (FUSE's notify_store: a variant of DESIGN.md step 6, way (b), that
// updates what readers holding the file open read from in place, where an
// invalidation would drop it); everything else (the -shm header, truncation,
// the -wal) goes through the mount, where the read-only switch lets the
// daemon's own requests through. While it writes, the daemon holds the very
// locks SQLite's own writer would hold, taken through the mount: readers
// meanwhile get SQLITE_BUSY (rollback modes; the busy handler retries) or
// wait inside SQLite (WAL mode), and never see a half-applied transaction.
//
// Files are created beside the mount, in the backing directory: a create
// through the mount asks JavaScript, which is busy here.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { pagesOfWholeDatabase, PENDING_BYTE, RESERVED_BYTE, SHARED_FIRST, SHARED_SIZE } from '../sqlite/dbheader.js';
import { ApplyError } from './types.js';
import { writeFully } from './file-io.js';
import { resetWalIndexHeader, SHM_HEADER_SIZE, WAL_WRITE_LOCK } from '../sqlite/shm.js';
import { lockBefore, lockRange } from '../fuse/locks.js';
import type { Logger } from '../log.js';
import type { FileControl } from '../fuse/index.js';

/** Tries at opening a file through the mount that keeps being unlinked under us. */
const OPEN_ATTEMPTS = 5;
/** WRITE, CKPT, RECOVER and the five READ locks: bytes 120..127 of the -shm. */
const WAL_LOCK_BYTES = 8;
/** PENDING, RESERVED and the SHARED range are one run of bytes. */
const ROLLBACK_LOCK_BYTES = SHARED_FIRST + SHARED_SIZE - PENDING_BYTE;
/** Bytes stored into the kernel's cache per call (one write to /dev/fuse each). */
const STORE_BYTES = 1024 * 1024;
/** A lock still not granted after this long is reported (once per wait). */
const SLOW_LOCK_MS = 5000;

/**
 * At most this many transactions are staged before their pages are
 * written; after a stop part way through, recovery writes the pages of
 * this many logged transactions again (recovery.ts).
 */
export const STAGE_LIMIT = 256;

export interface PageWrite {
  pgno: number;
  data: Buffer;
}

/** Transactions' pages merged, waiting to be written (DatabaseWriter.stage). */
interface Stage {
  pages: Map<number, Buffer>;
  pageSize: number;
  /** The last staged transaction's size in pages, and the smallest any of them had. */
  commitSize: number;
  minCommitSize: number;
  count: number;
}

/**
 * A transaction that changes the page size (VACUUM) must rewrite every page:
 * one with fewer would leave a malformed file.
 */
export function checkPageSizeChange(tx: { pageSize: number; commitSize: number; minTxid: number; maxTxid: number; pages: readonly unknown[] }, pageSize: number, name: string): void {
  if (!pageSize || tx.pageSize === pageSize || tx.minTxid === 1) return;
  const needed = pagesOfWholeDatabase(tx.pageSize, tx.commitSize);
  if (tx.pages.length !== needed) {
    throw new ApplyError(`database ${name}: transaction ${tx.maxTxid} changes the page size from ${pageSize} to ${tx.pageSize} but holds ${tx.pages.length} of ${needed} pages`);
  }
}

/** Is the database file (a snapshot image) in WAL mode? Its header says. */
export function walModeOfFile(file: string): boolean {
  const head = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, 20, 0);
  } finally {
    fs.closeSync(fd);
  }
  return head[18] === 2 && head[19] === 2;
}

/** Does the database end a transaction in WAL mode? Page 1 says, when the transaction wrote it (a WAL-mode commit need not). */
export function walModeOf(tx: { pages: readonly PageWrite[] }, before: boolean): boolean {
  return tx.pages[0]?.pgno === 1 ? tx.pages[0].data[18] === 2 && tx.pages[0].data[19] === 2 : before;
}

function emptyStage(): Stage {
  return { pages: new Map(), pageSize: 0, commitSize: 0, minCommitSize: Infinity, count: 0 };
}

/** The daemon's own descriptors on one database: through the mount (locks, the -shm, truncation) and beside it (pages). */
export class DatabaseWriter {
  private db?: fsp.FileHandle;
  private shm?: fsp.FileHandle;
  /** The database file beside the mount, and the mounted file's node id (its st_ino): see writePages. */
  private backing?: { fd: number; nodeId: number };
  /** The database file's size as this writer left it (-1: ask the file), saving an fstat per apply. */
  private size = -1;
  private staged = emptyStage();

  constructor(
    readonly name: string,
    readonly mountedPath: string,
    readonly backingPath: string,
    private readonly log: Logger,
    private readonly files: FileControl,
  ) {}

  /**
   * The journal mode and `-wal` state the last finishWalState() left. While
   * this node is a replica its files are the daemon's alone, so they need
   * not be read back before each apply; forget() when that stops being so.
   */
  private left?: { walMode: boolean };

  forget(): void {
    this.left = undefined;
  }

  /** Is the database (as it is on disk now) in WAL mode? Read from the header's version bytes. */
  walMode(): boolean {
    if (this.left) return this.left.walMode;
    try {
      const fd = fs.openSync(this.backingPath, 'r');
      try {
        const b = Buffer.alloc(2);
        return fs.readSync(fd, b, 0, 2, 18) === 2 && b[0] === 2 && b[1] === 2;
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return false;
    }
  }

  /**
   * Runs `write` while SQLite's readers and writers are shut out: in WAL
   * mode the -shm's WRITE, CKPT, RECOVER and READ locks, otherwise the
   * database file's PENDING, RESERVED and SHARED locks (what a writer
   * holds at EXCLUSIVE).
   */
  async exclusive<T>(walMode: boolean, write: () => T | Promise<T>): Promise<T> {
    await this.openDb();
    const target = walMode ? await this.openShm() : this.db!;
    const [start, length] = walMode ? [WAL_WRITE_LOCK, WAL_LOCK_BYTES] : [PENDING_BYTE, ROLLBACK_LOCK_BYTES];
    await this.lock(target, start, length);
    try {
      return await write();
    } finally {
      await lockRange(target.fd, 'unlock', start, length, false);
    }
  }

  /**
   * Runs `fn` once no SQLite write transaction is in progress: holds the
   * lock a writer holds for its whole transaction (WAL: WRITE on the -shm;
   * rollback: RESERVED on the database). Readers are not held up. Gives up
   * waiting after `timeoutMs` and runs `fn` anyway (false is returned).
   */
  async betweenTransactions(walMode: boolean, timeoutMs: number, fn: () => void): Promise<boolean> {
    await this.openDb();
    const target = walMode ? await this.openShm(true) : this.db!;
    const start = walMode ? WAL_WRITE_LOCK : RESERVED_BYTE;
    const locked = await lockBefore(target.fd, 'write', start, 1, Date.now() + timeoutMs);
    try {
      fn();
    } finally {
      if (locked) await lockRange(target.fd, 'unlock', start, 1, false);
    }
    return locked;
  }

  private async lock(handle: fsp.FileHandle, start: number, length: number): Promise<void> {
    if (await lockRange(handle.fd, 'write', start, length, false)) return;
    const slow = setTimeout(() => this.log.warn({ file: this.mountedPath }, 'waiting for SQLite readers to end their transactions before applying'), SLOW_LOCK_MS);
    try {
      await lockRange(handle.fd, 'write', start, length, true);
    } finally {
      clearTimeout(slow);
    }
  }

  private async openDb(): Promise<void> {
    this.db ??= await openThroughMount(this.mountedPath, this.backingPath);
    this.backing ??= { fd: fs.openSync(this.backingPath, 'r+'), nodeId: fs.fstatSync(this.db.fd).ino };
  }

  /**
   * The -shm through the mount, created beside it first if no reader made one
   * yet. With `recheck`, a handle kept from before is first checked against
   * the file's name: on a primary, applications' connections come and go,
   * and the last to close unlinks the -shm, so a kept handle's locks would
   * shut out no one.
   */
  private async openShm(recheck = false): Promise<fsp.FileHandle> {
    const shmPath = this.mountedPath + '-shm';
    if (recheck && this.shm && !(await stillNamed(this.shm, shmPath))) {
      await this.shm.close().catch(() => undefined);
      this.shm = undefined;
    }
    this.shm ??= await openThroughMount(shmPath, this.backingPath + '-shm');
    return this.shm;
  }

  /**
   * Stages one transaction's pages and size. Staged transactions are merged
   * (the newest version of each page) and written by writeStaged(): a burst
   * of transactions that each touch the same few pages costs a few writes,
   * not a few per transaction.
   */
  stage(pages: readonly PageWrite[], pageSize: number, commitSize: number): void {
    if (this.staged.count > 0 && pageSize !== this.staged.pageSize) this.writeStaged(); // a new, empty stage follows
    const s = this.staged;
    s.pageSize = pageSize;
    // Staged pages all lie within the last size: only a shrink leaves some beyond the new one.
    if (s.count > 0 && commitSize < s.commitSize) for (const pgno of s.pages.keys()) if (pgno > commitSize) s.pages.delete(pgno);
    for (const p of pages) if (p.pgno <= commitSize) s.pages.set(p.pgno, p.data);
    s.minCommitSize = Math.min(s.minCommitSize, commitSize);
    s.commitSize = commitSize;
    s.count++;
  }

  /**
   * Writes what stage() gathered, then sets the file's size to the last
   * staged transaction's. Pages past the file's end go first: on a full
   * disk the write that fails is one that grows the file, before any page
   * readers have is overwritten, and the file is cut back to what it was
   * (whole). A batch that shrinks the file part way writes in page order.
   */
  writeStaged(): void {
    const s = this.staged;
    if (s.count === 0) return;
    this.staged = emptyStage();
    const pages = [...s.pages].sort((a, b) => a[0] - b[0]);
    const end = this.fileSize();
    if (s.minCommitSize * s.pageSize < end) {
      this.truncate(s.minCommitSize * s.pageSize); // what lay past the shrink stays cut even where a later transaction grew the file again
    } else {
      const firstNew = pages.findIndex(([pgno]) => pgno * s.pageSize > end);
      if (firstNew >= 0) this.grow(pages.splice(firstNew), s.pageSize, end);
    }
    this.storeRuns(this.writePages(pages, s.pageSize));
    this.truncate(s.commitSize * s.pageSize);
  }

  /** Writes the pages past the file's end (`end`); if one cannot be written, cuts the file back to `end` and throws. */
  private grow(pages: readonly [number, Buffer][], pageSize: number, end: number): void {
    let runs: [number, Buffer][];
    try {
      runs = this.writePages(pages, pageSize);
    } catch (err) {
      this.size = -1; // a short write may have grown the file
      this.truncate(end);
      throw err;
    }
    this.storeRuns(runs); // once all are in
  }

  private fileSize(): number {
    if (this.size < 0) this.size = fs.fstatSync(this.backing!.fd).size;
    return this.size;
  }

  /** Forgets staged pages (the caller no longer trusts them). */
  discardStaged(): void {
    this.staged = emptyStage();
  }

  /**
   * Writes [pgno, data] pairs (ascending), one write per run of consecutive
   * pages, to the backing file; returns the runs [offset, bytes] for
   * storeRuns().
   */
  private writePages(pages: readonly [number, Buffer][], pageSize: number): [number, Buffer][] {
    const runs: [number, Buffer][] = [];
    for (let i = 0; i < pages.length; ) {
      let j = i + 1;
      while (j < pages.length && pages[j]![0] === pages[j - 1]![0] + 1) j++;
      const offset = (pages[i]![0] - 1) * pageSize;
      const bytes = j === i + 1 ? pages[i]![1] : Buffer.concat(pages.slice(i, j).map((p) => p[1]));
      writeFully(this.backing!.fd, bytes, offset);
      runs.push([offset, bytes]);
      if (this.size >= 0) this.size = Math.max(this.size, offset + bytes.length);
      i = j;
    }
    return runs;
  }

  /**
   * Puts written runs into the kernel's cache of the mounted file: no FUSE
   * round trip (two thread wakeups each, which on a busy machine were most
   * of an apply's time), and readers' cached pages stay cached. The locks
   * held keep readers out meanwhile.
   */
  private storeRuns(runs: readonly [number, Buffer][]): void {
    const { nodeId } = this.backing!;
    for (const [offset, bytes] of runs) {
      for (let at = 0; at < bytes.length; at += STORE_BYTES) this.files.storePages(nodeId, offset + at, bytes.subarray(at, at + STORE_BYTES));
    }
  }

  /**
   * Replaces the whole database with an image from a file beside the mount:
   * copied in place in the backing file (the kernel's copy, no FUSE round
   * trips), then the kernel's cached pages of the database are dropped
   * (DESIGN.md step 6, way (b)). The -shm header comes after, through the
   * mount (finishWalState), so no reader re-reads before the pages changed.
   */
  async replaceFrom(file: string): Promise<void> {
    fs.copyFileSync(file, this.backingPath);
    this.size = -1;
    await this.files.invalidate(this.name);
  }

  /** Cuts the database file to `size` bytes when it is longer. */
  private truncate(size: number): void {
    if (this.fileSize() > size) fs.ftruncateSync(this.db!.fd, size);
    this.size = Math.min(this.size, size);
  }

  /**
   * After a change in WAL mode: the -wal is empty (created if missing, so a
   * read-only reader can open it) and the wal-index header is rewritten so
   * every reader drops its page cache and reads the database file. In a
   * rollback mode a leftover -wal is removed: it would put readers in WAL mode.
   */
  finishWalState(walMode: boolean, pageCount: number, pageSize: number): void {
    const wal = this.mountedPath + '-wal';
    const backingWal = this.backingPath + '-wal';
    const before = this.left;
    this.left = { walMode };
    if (!walMode) {
      if (before?.walMode !== false && fs.existsSync(backingWal)) fs.unlinkSync(wal);
      return;
    }
    if (before?.walMode !== true) {
      if (!fs.existsSync(backingWal)) fs.closeSync(fs.openSync(backingWal, 'a', 0o644));
      else if (fs.statSync(backingWal).size > 0) fs.truncateSync(wal, 0);
    }
    if (!this.shm) return; // opened by exclusive() whenever the database was in WAL mode
    const current = Buffer.alloc(SHM_HEADER_SIZE);
    fs.readSync(this.shm.fd, current, 0, SHM_HEADER_SIZE, 0);
    writeFully(this.shm.fd, resetWalIndexHeader(current, pageCount, pageSize), 0);
  }

  /**
   * An empty -wal and a fresh -shm header for a database in WAL mode that
   * has none (a stop between an apply's pages and its -wal): no read-only
   * reader can create it. Under the writer's locks.
   */
  async recreateWal(pageCount: number, pageSize: number): Promise<void> {
    this.left = undefined; // whatever was noted, the -wal is gone
    await this.exclusive(true, async () => {
      await this.prepareWal();
      this.finishWalState(true, pageCount, pageSize);
    });
  }

  /** Opens the -shm (through the mount) so finishWalState can rewrite it. */
  async prepareWal(): Promise<void> {
    await this.openShm();
  }

  /** Removes the database and its companions (the primary deleted it). */
  removeFiles(): void {
    this.left = undefined;
    for (const suffix of ['', '-wal', '-shm', '-journal']) {
      if (fs.existsSync(this.backingPath + suffix)) fs.unlinkSync(this.mountedPath + suffix);
    }
  }

  async close(): Promise<void> {
    if (this.backing) fs.closeSync(this.backing.fd);
    this.backing = undefined;
    await this.db?.close().catch(() => undefined);
    await this.shm?.close().catch(() => undefined);
    this.db = this.shm = undefined;
    this.size = -1;
    this.left = undefined;
  }
}

/**
 * Opens a file through the mount for reading and writing (fcntl write locks
 * need that), creating it empty beside the mount first when it is missing:
 * a create through the mount would ask the JavaScript thread, busy here.
 * The last SQLite connection to close a WAL database unlinks its -shm at
 * any moment: one gone between being made and being opened is made again.
 */
export async function openThroughMount(mountedPath: string, backingPath: string): Promise<fsp.FileHandle> {
  for (let attempt = 1; ; attempt++) {
    if (!fs.existsSync(backingPath)) fs.closeSync(fs.openSync(backingPath, 'a', 0o644));
    try {
      return await fsp.open(mountedPath, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= OPEN_ATTEMPTS) throw err;
    }
  }
}

/**
 * Whether `handle` is still the file at `mountedPath`, not one unlinked since
 * (through the mount, an unlinked file's handle may answer ESTALE). Never a
 * synchronous stat through the mount: a lookup waits behind an unlink in
 * the directory, and an unlink can wait for this (JavaScript) thread.
 */
async function stillNamed(handle: fsp.FileHandle, mountedPath: string): Promise<boolean> {
  try {
    const [now, held] = await Promise.all([fsp.stat(mountedPath), handle.stat()]);
    return now.ino === held.ino;
  } catch {
    return false; // gone, or the handle is stale
  }
}



/** Renames `from` to `to`; false when they are on different file systems (the caller copies instead). */
export function moveFile(from: string, to: string): boolean {
  try {
    fs.renameSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EXDEV') return false;
    throw err;
  }
}
