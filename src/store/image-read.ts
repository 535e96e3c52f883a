// A consistent image of one database, read straight from its backing files
// while the daemon holds, through the mount, the locks that keep SQLite from
// changing the database file:
//   - SHARED on the database file, as any SQLite reader holds it: no
//     rollback-mode writer can write the file, and no connection can leave
//     WAL mode (both need EXCLUSIVE);
//   - in WAL mode, CKPT on the -shm: no checkpoint writes the database file.
// In WAL mode the image is the file overlaid with the WAL's committed
// frames, read without stopping writers: they only append; a WAL restart
// needs every frame checkpointed already (then the file alone is a committed
// state, and any frames read from either WAL generation lay a committed
// prefix over it); a torn or half-written frame fails the WAL's checksums and
// ends the scan. The locks stay held while the image is read, page range by
// page range (a snapshot streams it to a replica as it reads it): only
// checkpoints wait meanwhile. In a rollback mode writers would wait too, so
// the image is read into memory at once and the locks let go.
// The caller still names the image by its checksum among the recent
// positions (or by the WAL frames it knows were recorded), so a state that
// was never committed is never sent.
// This replaces SQLite reading the image through the mount page by page (a
// FUSE round trip per page).
import fsp from 'node:fs/promises';
import { lockBefore, lockRange } from '../fuse/locks.js';
import { isWalModeHeader, parseDbHeader, PENDING_BYTE, SHARED_FIRST, SHARED_SIZE } from '../sqlite/dbheader.js';
import { WAL_CKPT_LOCK } from '../sqlite/shm.js';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '../sqlite/wal.js';
import { openThroughMount } from './apply.js';
import { readDatabaseHeader, scanWal, walPages } from './pages.js';

/** Bytes per read call on the backing file (an image read at once is read in slices of this). */
const READ_SLICE = 16 * 1024 * 1024;

/** Pages of an image, read in ranges; close() lets go of files and locks (after reads in flight). */
export interface ImagePages {
  readonly pageSize: number;
  readonly commitSize: number;
  /** Pages firstPgno.. (at most count, never past commitSize); read into `into` when given and the pages are not in memory already. */
  read(firstPgno: number, count: number, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

export interface LockedImage extends ImagePages {
  readonly walMode: boolean;
  /** WAL mode: the WAL generation and the byte offset after the last committed frame laid over the file; undefined when none was. */
  readonly walEnd?: { salt1: number; salt2: number; frameEnd: number };
}

/**
 * Whether a WAL-mode image is the state after the last commit a DB recorded:
 * its frames end where that commit ended, in the same WAL generation, or,
 * with no frames, the WAL was emptied after it (SQLite empties a WAL only
 * once it is checkpointed whole).
 */
export function imageIsRecordedState(image: LockedImage, recorded: { pageSize: number; commitSize: number; wal?: { salt1: number; salt2: number; frameEnd: number } }): boolean {
  if (!image.walMode || image.pageSize !== recorded.pageSize || image.commitSize !== recorded.commitSize) return false;
  const [w, r] = [image.walEnd, recorded.wal];
  if (!w || !r) return !w && !r;
  return w.salt1 === r.salt1 && w.salt2 === r.salt2 && w.frameEnd === r.frameEnd;
}

/** An image already in memory (read at once, or exported by SQLite). */
export function memoryImagePages(bytes: Buffer, pageSize: number): ImagePages {
  return {
    pageSize,
    commitSize: bytes.length / pageSize,
    read: async (firstPgno, count) => bytes.subarray((firstPgno - 1) * pageSize, Math.min(bytes.length, (firstPgno - 1 + count) * pageSize)),
    close: async () => {},
  };
}

/**
 * The database as SQLite would read it now, held under SQLite's locks until
 * close(), or undefined when the locks were not granted within `timeoutMs`
 * (a long write transaction) or the files hold no database: the caller then
 * lets SQLite read it through the mount.
 */
export async function openImageUnderLocks(mountedPath: string, backingPath: string, timeoutMs: number): Promise<LockedImage | undefined> {
  const deadline = Date.now() + timeoutMs;
  const handles: fsp.FileHandle[] = [];
  // Closing a descriptor drops every lock it holds.
  const closeAll = async () => {
    for (const h of handles.reverse()) await h.close().catch(() => undefined);
    handles.length = 0;
  };
  const giveUp = async (): Promise<undefined> => {
    await closeAll();
    return undefined;
  };
  try {
    const db = await fsp.open(mountedPath, 'r+');
    handles.push(db);
    // SQLite's way to SHARED: PENDING (read) first, so a writer waiting for EXCLUSIVE is not starved, then the SHARED range.
    if (!(await lockBefore(db.fd, 'read', PENDING_BYTE, 1, deadline))) return giveUp();
    const shared = await lockBefore(db.fd, 'read', SHARED_FIRST, SHARED_SIZE, deadline);
    await lockRange(db.fd, 'unlock', PENDING_BYTE, 1, false);
    if (!shared) return giveUp();

    const backing = await fsp.open(backingPath, 'r');
    handles.push(backing);
    const header = readDatabaseHeader(backing.fd);
    if (!header) return giveUp();
    const { pageSize } = header;
    let commitSize = header.pageCount;
    const walMode = isWalModeHeader(parseDbHeader(header.head));
    if (!walMode) {
      const bytes = await readRange(backing, Buffer.allocUnsafe(commitSize * pageSize), 0);
      await closeAll(); // rollback-mode writers wait only for this read
      return { ...memoryImagePages(bytes, pageSize), walMode };
    }
    const shm = await openThroughMount(mountedPath + '-shm', backingPath + '-shm');
    handles.push(shm);
    if (!(await lockBefore(shm.fd, 'write', WAL_CKPT_LOCK, 1, deadline))) return giveUp();
    const scan = scanWal(backingPath + '-wal', pageSize);
    const overlay = new Map<number, Buffer>();
    for (const tx of scan?.transactions ?? []) {
      for (const [pgno, data] of walPages(tx)) overlay.set(pgno, data);
      commitSize = tx.commitSize;
    }
    const walEnd = scan && scan.transactions.length > 0
      ? { salt1: scan.header.salt1, salt2: scan.header.salt2, frameEnd: WAL_HEADER_SIZE + scan.committedFrameEnd * (WAL_FRAME_HEADER_SIZE + pageSize) }
      : undefined;
    const reads = new Set<Promise<unknown>>();
    return {
      pageSize,
      commitSize,
      walMode,
      walEnd,
      read(firstPgno, count, into) {
        const last = Math.min(commitSize, firstPgno + count - 1);
        const length = Math.max(0, last - firstPgno + 1) * pageSize;
        const bytes = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
        const reading = readRange(backing, bytes, (firstPgno - 1) * pageSize).then((b) => {
          for (let pgno = firstPgno; pgno <= last; pgno++) overlay.get(pgno)?.copy(b, (pgno - firstPgno) * pageSize);
          return b;
        });
        const tracked = reading.catch(() => undefined).finally(() => reads.delete(tracked));
        reads.add(tracked);
        return reading;
      },
      async close() {
        await Promise.all(reads);
        await closeAll();
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** Fills `bytes` from the file at `offset`; pages past the end of the file read as zeros, as SQLite sees them. */
async function readRange(file: fsp.FileHandle, bytes: Buffer, offset: number): Promise<Buffer> {
  for (let pos = 0; pos < bytes.length; ) {
    const want = Math.min(READ_SLICE, bytes.length - pos);
    const { bytesRead } = await file.read(bytes, pos, want, offset + pos);
    if (bytesRead === 0) {
      bytes.fill(0, pos);
      break;
    }
    pos += bytesRead;
  }
  return bytes;
}
