// litefs export / import on the node: a consistent copy of a database out,
// and a whole database in as one transaction (validated first).
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { decodePageSize, isSqliteHeader, isValidPageSize } from '../sqlite/dbheader.js';

export class ImportError extends Error {}

/**
 * Runs a job in a child process. Not a worker thread: SQLite maps the -shm
 * of the database it opens, and a page fault on a mapping of this process's
 * own mount can deadlock the process (the faulting thread holds the memory
 * map lock that the threads answering FUSE requests then need).
 */
function inWorker<T>(job: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./transfer-worker.js', import.meta.url)), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let settled = false;
    child.once('message', (msg: { ok: boolean; result?: T; error?: string }) => {
      settled = true;
      if (msg.ok) resolve(msg.result as T);
      else reject(new Error(msg.error));
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (!settled) reject(new Error(`transfer process exited with ${code}`));
    });
    child.send(job);
  });
}

/** The database's bytes, as SQLite reads them through the mount. */
export async function exportDatabase(mountedPath: string): Promise<Buffer> {
  const bytes = await inWorker<Uint8Array>({ op: 'export', path: mountedPath });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Streams the upload to a temp file beside the databases, checks it is a
 * sound SQLite database, then copies it into the mounted database in one
 * transaction. Nothing changes when any check fails.
 */
export async function importDatabase(body: Readable, mountedPath: string, scratchDir: string): Promise<{ bytes: number }> {
  const tmp = path.join(scratchDir, `.import-${process.pid}-${Date.now()}.tmp`);
  try {
    await pipeline(body, fs.createWriteStream(tmp));
    const size = fs.statSync(tmp).size;
    const head = Buffer.alloc(100);
    const fd = fs.openSync(tmp, 'r');
    fs.readSync(fd, head, 0, 100, 0);
    fs.closeSync(fd);
    if (size < 100 || !isSqliteHeader(head)) throw new ImportError('import: the upload is not a SQLite database (bad header)');
    const pageSize = decodePageSize(head.readUInt16BE(16));
    if (!isValidPageSize(pageSize) || size % pageSize !== 0) throw new ImportError(`import: the upload is not a whole SQLite database (${size} bytes, page size ${pageSize})`);
    // WAL-mode uploads would need their -wal; the bytes here are the whole database
    head.writeUInt8(1, 18);
    head.writeUInt8(1, 19);
    const wfd = fs.openSync(tmp, 'r+');
    fs.writeSync(wfd, head, 18, 2, 18);
    fs.closeSync(wfd);
    const check = await inWorker<string>({ op: 'check', path: tmp }).catch((err: Error) => {
      throw new ImportError(`import: the upload is not a sound SQLite database: ${err.message}`);
    });
    if (check !== 'ok') throw new ImportError(`import: integrity_check failed: ${check.slice(0, 200)}`);
    await inWorker({ op: 'restore', from: tmp, to: mountedPath });
    return { bytes: size };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
