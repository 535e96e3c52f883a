// Byte-range locks taken through the mount, as SQLite takes them, so the
// daemon can exclude SQLite's readers and writers. They are open-file-
// description locks: they belong to one fd, never to the whole process,
// and conflict with SQLite's POSIX locks in other processes. Taken on
// libuv's pool, so a lock that waits never blocks the JavaScript thread.
import fs from 'node:fs/promises';
import { native } from './native.js';

export type LockKind = 'read' | 'write' | 'unlock';
const kindCode: Record<LockKind, number> = { read: 0, write: 1, unlock: 2 };

/** Takes (or, with wait=false, tries) a lock; false means another holds it. */
export function lockRange(fd: number, kind: LockKind, start: number, length: number, wait: boolean): Promise<boolean> {
  return native().lock(fd, kindCode[kind], start, length, wait);
}

/**
 * Tries the lock every 2 ms until it is granted (true) or `deadline` (ms
 * since the epoch) passes (false): a lock that waited inside fcntl would
 * hold one of libuv's few pool threads, and could not give up.
 */
export async function lockBefore(fd: number, kind: 'read' | 'write', start: number, length: number, deadline: number): Promise<boolean> {
  for (;;) {
    if (await lockRange(fd, kind, start, length, false)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** One open file through the mount whose fd carries the daemon's locks. */
export class MountedFileLock {
  private constructor(
    readonly path: string,
    private readonly handle: fs.FileHandle,
  ) {}

  /** Opens read-write: fcntl write locks need a descriptor open for writing. */
  static async open(path: string): Promise<MountedFileLock> {
    return new MountedFileLock(path, await fs.open(path, 'r+'));
  }

  lock(kind: 'read' | 'write', start: number, length: number, opts: { wait: boolean }): Promise<boolean> {
    return lockRange(this.handle.fd, kind, start, length, opts.wait);
  }

  async unlock(start: number, length: number): Promise<void> {
    await lockRange(this.handle.fd, 'unlock', start, length, false);
  }

  /** Closing the descriptor releases every lock it holds. */
  close(): Promise<void> {
    return this.handle.close();
  }
}
