// Small file I/O helpers shared by the log, the commit path and the replica's writer.
import fs from 'node:fs';
import fsp from 'node:fs/promises';

/** Writes all of `buf` at `offset`; a write that cannot go on (a full disk) throws its reason. */
export function writeFully(fd: number, buf: Buffer, offset: number): void {
  for (let done = 0; done < buf.length; ) done += fs.writeSync(fd, buf, done, buf.length - done, offset + done);
}

/** Writes `bufs` back to back at `offset`, all of them (a vectored write may take less, e.g. near a full disk). */
export function writevFully(fd: number, bufs: Buffer[], offset: number): void {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  const n = fs.writevSync(fd, bufs, offset);
  if (n < total) writeFully(fd, Buffer.concat(bufs).subarray(n), offset + n);
}

/** fsync of a file or directory by name. */
export function syncFile(name: string): void {
  const fd = fs.openSync(name, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** syncFile on libuv's pool. */
export async function syncPath(name: string): Promise<void> {
  const handle = await fsp.open(name, 'r');
  await handle.sync().finally(() => handle.close());
}

/** writeFully on libuv's pool. */
export async function writeAt(fd: number, buf: Buffer, offset: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    done += await new Promise<number>((resolve, reject) => fs.write(fd, buf, done, buf.length - done, offset + done, (err, n) => (err ? reject(err) : resolve(n))));
  }
}

/**
 * One buffer reused for reads whose bytes are done with (copied) before the
 * next read: a new 4 KiB+ buffer for each commit's WAL frames was most of
 * a primary's garbage. Reads larger than `limit` get a buffer of their own.
 */
export class ReadScratch {
  private buf = Buffer.alloc(0);
  constructor(private readonly limit: number) {}

  take(size: number): Buffer {
    if (size > this.limit) return Buffer.allocUnsafe(size);
    if (this.buf.length < size) this.buf = Buffer.allocUnsafe(Math.max(size, 64 * 1024));
    return this.buf.subarray(0, size);
  }
}
