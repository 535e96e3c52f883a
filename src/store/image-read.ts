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
// ends the scan. The caller still names the image by its checksum among the
// recent positions, so a state that was never committed is never sent.
// This replaces SQLite reading the image through the mount page by page (a
// FUSE round trip per page): the backing file is read in large slices from
// the page cache. Rollback-mode writers wait for the read (the copy of the
// bytes, well under a second per GiB); WAL-mode writers never wait.
import fsp from 'node:fs/promises';
import { lockBefore, lockRange } from '../fuse/locks.js';
import { isWalModeHeader, parseDbHeader, PENDING_BYTE, SHARED_FIRST, SHARED_SIZE } from '../sqlite/dbheader.js';
import { WAL_CKPT_LOCK } from '../sqlite/shm.js';
import { openThroughMount } from './apply.js';
import { readDatabaseHeader, scanWal, walPages } from './pages.js';

/** Bytes per read of the backing file: large enough to cost little per call, small enough not to hold the pool. */
const READ_SLICE = 16 * 1024 * 1024;

/**
 * The database as SQLite would read it now, or undefined when the locks were
 * not granted within `timeoutMs` (a long write transaction) or the files hold
 * no database: the caller then lets SQLite read it through the mount.
 */
export async function readImageUnderLocks(mountedPath: string, backingPath: string, timeoutMs: number): Promise<Buffer | undefined> {
  const deadline = Date.now() + timeoutMs;
  const handles: fsp.FileHandle[] = [];
  try {
    const db = await fsp.open(mountedPath, 'r+');
    handles.push(db);
    // SQLite's way to SHARED: PENDING (read) first, so a writer waiting for EXCLUSIVE is not starved, then the SHARED range.
    if (!(await lockBefore(db.fd, 'read', PENDING_BYTE, 1, deadline))) return undefined;
    const shared = await lockBefore(db.fd, 'read', SHARED_FIRST, SHARED_SIZE, deadline);
    await lockRange(db.fd, 'unlock', PENDING_BYTE, 1, false);
    if (!shared) return undefined;

    const backing = await fsp.open(backingPath, 'r');
    handles.push(backing);
    const header = readDatabaseHeader(backing.fd);
    if (!header) return undefined;
    const { pageSize } = header;
    let commitSize = header.pageCount;
    let walOverlay: Map<number, Buffer> | undefined;
    if (isWalModeHeader(parseDbHeader(header.head))) {
      const shm = await openThroughMount(mountedPath + '-shm', backingPath + '-shm');
      handles.push(shm);
      if (!(await lockBefore(shm.fd, 'write', WAL_CKPT_LOCK, 1, deadline))) return undefined;
      const scan = scanWal(backingPath + '-wal', pageSize);
      for (const tx of scan?.transactions ?? []) {
        walOverlay ??= new Map();
        for (const [pgno, data] of walPages(tx)) walOverlay.set(pgno, data);
        commitSize = tx.commitSize;
      }
    }
    const bytes = Buffer.allocUnsafe(commitSize * pageSize);
    for (let pos = 0; pos < bytes.length; ) {
      const want = Math.min(READ_SLICE, bytes.length - pos);
      const { bytesRead } = await backing.read(bytes, pos, want, pos);
      if (bytesRead === 0) {
        bytes.fill(0, pos); // pages past the end of the file read as zeros, as SQLite sees them
        break;
      }
      pos += bytesRead;
    }
    for (const [pgno, data] of walOverlay ?? []) if (pgno <= commitSize) data.copy(bytes, (pgno - 1) * pageSize);
    return bytes;
  } finally {
    // Closing a descriptor drops every lock it holds.
    for (const h of handles.reverse()) await h.close().catch(() => undefined);
  }
}
