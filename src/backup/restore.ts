// Restore: rebuild one database from its backup as of the newest
// transaction, a TXID or a moment. The newest snapshot at or before the
// target is streamed into a temp file beside the output (its chunks
// decompress off the JavaScript thread) while the segments download and
// decode ahead; the segments are then applied strictly in order, each
// transaction checked against the running database checksum before and
// after. The file is renamed into place only after SQLite's integrity check
// passes and a re-read of it gives the checksum the transactions promised
// (the fsync, the integrity check and the re-read run at once, on three
// threads); on any failure the temp file goes and the output is left untouched.
import fs from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { lockPageNumber, pagesOfWholeDatabase } from '../sqlite/dbheader.js';
import { AlignedPool, DirectFileWriter, readAhead } from '../store/direct-file.js';
import { syncPath, writevFully } from '../store/file-io.js';
import { CHECKSUM_FLAG, PageChecksums, formatHex64 as hex, pageChecksumsXor } from '../txlog/checksum.js';
import type { TransactionFile } from '../txlog/txfile.js';
import { planRestore, readCatalog, RestorePlanError, type RestorePlan, type RestoreTarget, type SegmentInfo } from './catalog.js';
import type { BackupLayout } from './layout.js';
import { ObjectStoreError, type ObjectStore } from './object-store.js';
import { BackupObjectError, decodeSegmentObject, SnapshotObjectReader, type DecodedTransaction } from './objects.js';

export interface RestoreOptions {
  store: ObjectStore;
  layout: BackupLayout;
  db: string;
  /** The database file to create (its directory is created if missing); an existing file is replaced. */
  output: string;
  target: RestoreTarget;
  /** Segment objects downloaded at once (default 8). */
  parallelism?: number;
  /** Bytes of backup objects consumed so far, of the total the plan needs. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RestoreResult {
  db: string;
  generation: string;
  txid: number;
  checksum: bigint;
  pageSize: number;
  commitSize: number;
  /** Commit time of the last applied transaction, or the snapshot's upload time when none was applied. */
  timestamp: number;
  /** Size of the restored database. */
  bytes: number;
  /** Backup objects read. */
  objects: number;
  ms: number;
}

/** The restore could not finish for a reason outside any one object (integrity check, file system); one line. */
export class RestoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestoreError';
  }
}

/** Pages per writev call (Linux IOV_MAX is 1024). */
const MAX_RUN = 1024;
/** Page bytes applied before the batch is written: many small segments share one round of writes. */
const FLUSH_BYTES = 16 * 1024 * 1024;
/** Bytes of segment objects downloaded ahead of the one applied. */
const PREFETCH_BYTES = 64 * 1024 * 1024;
/** Read size for the final checksum pass; a multiple of every page size. */
const VERIFY_SLICE = 16 * 1024 * 1024;
const SIDECARS = ['-wal', '-shm', '-journal'];

/**
 * Restores `db` into `output`. Throws RestorePlanError (nothing to restore to the target), BackupObjectError
 * (an object is corrupt or does not chain), ObjectStoreError (the bucket failed) or RestoreError, each one line.
 */
export async function restoreDatabase(opts: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const plan = planRestore(opts.db, await readCatalog(opts.store, opts.layout, opts.db), opts.target);
  const output = path.resolve(opts.output);
  const tmp = `${output}.tmp-restore-${process.pid}`;
  const restorer = new Restorer(opts, plan);
  const checker = new IntegrityCheck(); // its thread loads SQLite while the objects download
  try {
    await fsp.mkdir(path.dirname(output), { recursive: true });
    await restorer.run(tmp);
    const closing = restorer.close();
    const checking = checker.run(tmp, restorer.commitSize * restorer.pageSize);
    const reading = fileChecksum(tmp, restorer.pageSize);
    await Promise.allSettled([closing, checking, reading]); // so that a failure never races the worker's files
    await closing;
    const verdict = await checking;
    const actual = await reading;
    removeSidecars(tmp); // a read-only SQLite leaves -wal and -shm behind for a WAL-mode database
    if (verdict !== 'ok') throw new RestoreError(`restore of ${opts.db}: integrity check failed: ${verdict}`);
    if (actual.bytes !== restorer.commitSize * restorer.pageSize || actual.checksum !== restorer.checksum) {
      throw new RestoreError(`restore of ${opts.db}: ${tmp} reads back as ${actual.bytes} bytes with checksum ${hex(actual.checksum)}, expected ${restorer.commitSize * restorer.pageSize} bytes with ${hex(restorer.checksum)}`);
    }
    // Leftovers of an earlier database at `output` would be replayed onto this one by the next SQLite to open it.
    removeSidecars(output);
    await fsp.rename(tmp, output);
    await syncPath(path.dirname(output)); // so the rename survives a crash
  } catch (err) {
    await checker.cancel();
    await restorer.abandon();
    removeSidecars(tmp);
    fs.rmSync(tmp, { force: true });
    throw oneLine(err, `restore of ${opts.db} into ${tmp}`);
  }
  return {
    db: opts.db, generation: plan.generation.id, txid: restorer.txid, checksum: restorer.checksum, pageSize: restorer.pageSize,
    commitSize: restorer.commitSize, timestamp: restorer.timestamp, bytes: restorer.commitSize * restorer.pageSize,
    objects: restorer.objects, ms: performance.now() - started,
  };
}

/** Known errors pass as they are; file-system errors become one-line RestoreErrors; anything else is a bug and keeps its stack. */
function oneLine(err: unknown, where: string): unknown {
  if (err instanceof RestoreError || err instanceof RestorePlanError || err instanceof BackupObjectError || err instanceof ObjectStoreError) return err;
  if (typeof (err as NodeJS.ErrnoException)?.code === 'string') return new RestoreError(`${where}: ${(err as Error).message}`);
  return err;
}

/** One restore's running state: the temp file, the checksums of what is in it, and where it is. */
class Restorer {
  private file?: FileHandle;
  private closing?: Promise<void>;
  private snapshotSynced: Promise<void> = Promise.resolve();
  private sums?: PageChecksums;
  /** The snapshot's writer while it streams. */
  private snapshotWriter?: DirectFileWriter;
  private readonly parallelism: number;
  private readonly totalBytes: number;
  private doneBytes = 0;
  /** Pages in the file once the writes queued so far land. */
  private filePages = 0;
  private done = false;
  txid = 0;
  timestamp = 0;
  objects = 0;

  constructor(
    private readonly opts: RestoreOptions,
    private readonly plan: RestorePlan,
  ) {
    const p = opts.parallelism ?? 8;
    if (!Number.isInteger(p) || p < 1) throw new RangeError(`parallelism ${p} is not a positive integer`);
    this.parallelism = p;
    this.totalBytes = plan.snapshot.size + plan.segments.reduce((n, s) => n + s.size, 0);
  }

  get pageSize(): number {
    return this.sums!.pageSize;
  }

  get commitSize(): number {
    return this.sums!.pageCount;
  }

  get checksum(): bigint {
    return this.sums!.checksum;
  }

  /** Creates the file at `filePath` and writes the snapshot and the segments into it (left open: close() syncs it). */
  async run(filePath: string): Promise<void> {
    this.file = await fsp.open(filePath, 'w+');
    // The snapshot is asked for first, so that its first bytes do not wait behind the segments' downloads.
    const snapshot = this.opts.store.getStream(this.plan.snapshot.key);
    snapshot.catch(() => {}); // awaited by restoreSnapshot()
    // The first segments download while the snapshot streams: their fetches would otherwise wait for it.
    const segments = new SegmentPrefetch(this.plan.segments, this.parallelism, (seg) => this.opts.store.get(seg.key), (seg, bytes) =>
      decodeSegmentObject(this.label(seg.key), this.opts.db, { kind: 'segment', minTxid: seg.minTxid, maxTxid: seg.maxTxid }, bytes));
    await this.restoreSnapshot(filePath, snapshot);
    // Pages read back early may have been evicted since (a host reclaiming
    // memory it sees unused does that within seconds): those come back from
    // the disk while the segments apply. Cached ones cost a lookup.
    readAhead(this.file.fd, 0, this.commitSize * this.pageSize);
    // The snapshot's pages start for the disk while the segments apply: the final fsync then has less to wait for.
    this.snapshotSynced = this.file.datasync();
    this.snapshotSynced.catch(() => {}); // awaited by close()
    await this.applySegments(segments);
    const target = this.plan.target;
    if (!('timestamp' in target) && this.txid !== this.plan.endTxid) {
      throw new RestoreError(`restore of ${this.plan.db}: the segments of generation ${this.plan.generation.id} end at TXID ${hex(this.txid)} (${this.txid}), not ${hex(this.plan.endTxid)} (${this.plan.endTxid})`);
    }
    this.progress(this.totalBytes - this.doneBytes);
  }

  /** fsync and close, once. */
  close(): Promise<void> {
    const file = this.file;
    this.closing ??= file ? this.snapshotSynced.then(() => file.sync()).finally(() => file.close()) : Promise.resolve();
    return this.closing;
  }

  /** After a failure: lets writes in flight finish (closing under them would fail them anyway), then closes. */
  async abandon(): Promise<void> {
    this.snapshotWriter?.abandon();
    await this.snapshotSynced.catch(() => {});
    this.closing ??= this.file?.close() ?? Promise.resolve();
    await this.closing.catch(() => {});
  }

  private progress(bytes: number): void {
    this.doneBytes += bytes;
    this.opts.onProgress?.(this.doneBytes, this.totalBytes);
  }

  private label(key: string): string {
    return `${this.opts.store.label}/${key}`;
  }

  /**
   * Streams the snapshot into the file: verified chunks, decompressed back
   * to back into 4 MiB slabs, go out one slab per positioned write, going
   * while the next slab fills. Past the page cache (O_DIRECT):
   * filling a gigabyte of fresh page cache cost more CPU than anything else
   * here (docs/backup.md); lz4 chunks decompress straight into aligned memory.
   * Each written chunk is read back into the page cache in the background,
   * for the integrity check and the final checksum.
   */
  private async restoreSnapshot(filePath: string, body: Promise<AsyncIterable<Buffer>>): Promise<void> {
    const { db } = this.opts;
    const snap = this.plan.snapshot;
    const memory = new AlignedPool();
    const writer = (this.snapshotWriter = DirectFileWriter.create(filePath, true, memory, { readBack: true }));
    const reader = new SnapshotObjectReader(this.label(snap.key), db, { kind: 'snapshot', minTxid: 1, maxTxid: snap.txid }, (firstPgno, pages, first) =>
      writer.write(pages, (firstPgno - 1) * first.pageSize), (size) => memory.take(0, size));
    for await (const chunk of await body) {
      await reader.push(chunk);
      this.progress(chunk.length);
    }
    const { first, checksums } = await reader.finish();
    await writer.finish(first.commitSize * first.pageSize);
    this.snapshotWriter = undefined;
    this.sums = checksums;
    this.filePages = first.commitSize;
    this.txid = snap.txid;
    this.timestamp = Math.floor(snap.lastModified); // a directory store's mtime has fractions of a ms
    this.objects = 1;
  }

  /** Applies the segments in order as the prefetcher (started with the snapshot's download) brings them. */
  private async applySegments(segments: SegmentPrefetch): Promise<void> {
    const segs = this.plan.segments;
    let batch = new PendingWrites(this.commitSize);
    for (let i = 0; i < segs.length && !this.done; i++) {
      this.applySegment(segs[i]!, await segments.take(), batch);
      this.objects++;
      this.progress(segs[i]!.size);
      if (batch.applied >= FLUSH_BYTES) {
        this.flush(batch);
        batch = new PendingWrites(this.commitSize);
      }
    }
    this.flush(batch);
  }

  /** Verifies the segment's transactions against the running checksums and adds the pages they leave to the batch. */
  private applySegment(seg: SegmentInfo, decoded: DecodedTransaction[], batch: PendingWrites): void {
    const label = this.label(seg.key);
    for (const { tx } of decoded) {
      let sums = this.sums!;
      if (tx.maxTxid <= this.txid) continue; // an overlapping object's older part
      if (this.stopsBefore(tx, label)) {
        this.done = true;
        return;
      }
      const fail = (what: string): never => {
        throw new BackupObjectError(`${label}: TXID ${hex(tx.minTxid)} (${tx.minTxid}): ${what}`);
      };
      if (tx.minTxid !== this.txid + 1) fail(`does not follow TXID ${hex(this.txid)} (${this.txid}), the database's position`);
      if (tx.preApplyChecksum !== sums.checksum) fail(`pre-apply checksum ${hex(tx.preApplyChecksum)} differs from the database's ${hex(sums.checksum)}`);
      if (tx.pageSize !== sums.pageSize) {
        // A VACUUM to another page size: the transaction is the whole database, which starts again from it.
        const needed = pagesOfWholeDatabase(tx.pageSize, tx.commitSize);
        if (tx.pages.length !== needed) fail(`changes the page size from ${sums.pageSize} to ${tx.pageSize} but holds ${tx.pages.length} of ${needed} pages`);
        sums = this.sums = new PageChecksums(tx.pageSize);
        batch.replaceAll();
      }
      for (const page of tx.pages) {
        sums.set(page.pgno, page.data);
        batch.write(page.pgno, page.data);
      }
      sums.truncate(tx.commitSize);
      batch.truncate(tx.commitSize);
      if (tx.postApplyChecksum !== sums.checksum) fail(`post-apply checksum ${hex(tx.postApplyChecksum)} differs from the database's ${hex(sums.checksum)} after it`);
      this.txid = tx.maxTxid;
      this.timestamp = tx.timestamp;
      const target = this.plan.target;
      if ('txid' in target && this.txid >= target.txid) {
        this.done = true;
        return;
      }
    }
  }

  /** Whether the restore ends before `tx`: it is past the target moment, or past the target TXID. */
  private stopsBefore(tx: TransactionFile, label: string): boolean {
    const target = this.plan.target;
    if ('timestamp' in target) return tx.timestamp > target.timestamp;
    if (!('txid' in target)) return false;
    if (tx.minTxid > target.txid) return true;
    if (tx.maxTxid > target.txid) {
      throw new RestorePlanError(`backup of ${this.opts.db}: ${label} holds TXIDs ${tx.minTxid}..${tx.maxTxid} as one transaction file; TXID ${target.txid} lies inside it (restore to ${tx.minTxid - 1} or ${tx.maxTxid})`);
    }
    return false;
  }

  /**
   * Applies a batch's net effect: cut to its smallest size, write the
   * surviving pages in runs, set the final size. Synchronous: the pages are
   * mostly scattered and already in the page cache, so each write is a few
   * microseconds, where an asynchronous one cost this thread ~30 (a 1 GiB
   * restore's 15k page writes: 0.5 s -> 0.2 s).
   */
  private flush(batch: PendingWrites): void {
    const fd = this.file!.fd;
    const pageSize = this.sums!.pageSize;
    if (batch.lowest < this.filePages) fs.ftruncateSync(fd, batch.lowest * pageSize);
    const pgnos = [...batch.pages.keys()].sort((a, b) => a - b);
    for (let i = 0; i < pgnos.length;) {
      let j = i + 1;
      while (j < pgnos.length && pgnos[j] === pgnos[j - 1]! + 1 && j - i < MAX_RUN) j++;
      const run = pgnos.slice(i, j).map((p) => batch.pages.get(p)!);
      writevFully(fd, run, (pgnos[i]! - 1) * pageSize);
      i = j;
    }
    const length = Math.max(Math.min(batch.lowest, this.filePages), pgnos[pgnos.length - 1] ?? 0);
    if (length !== batch.size) fs.ftruncateSync(fd, batch.size * pageSize);
    this.filePages = batch.size;
  }
}

/**
 * The net effect of a run of transactions on the file: the last content of
 * each page still inside the database, the smallest size the file was cut
 * to on the way (pages above it that no later transaction wrote are gone),
 * and the size at the end. Pages are views into the decoded segment.
 */
class PendingWrites {
  readonly pages = new Map<number, Buffer>();
  lowest: number;
  size: number;
  /** Page bytes added, overwritten ones included: what the batch may keep alive. */
  applied = 0;

  constructor(size: number) {
    this.lowest = size;
    this.size = size;
  }

  write(pgno: number, data: Buffer): void {
    this.pages.set(pgno, data);
    this.applied += data.length;
  }

  /** Everything before goes: the file is cut to nothing, then takes the pages that follow. */
  replaceAll(): void {
    this.pages.clear();
    this.lowest = 0;
    this.size = 0;
  }

  truncate(size: number): void {
    if (size < this.size) for (const pgno of this.pages.keys()) if (pgno > size) this.pages.delete(pgno);
    this.lowest = Math.min(this.lowest, size);
    this.size = size;
  }
}

/**
 * Segment objects downloaded and decoded (lz4, CRCs: what needs no earlier
 * transaction) ahead of the one applied: up to `parallelism` downloads at
 * once and PREFETCH_BYTES of objects held, started in plan order. Started
 * with the snapshot's download, so they arrive and decode while it streams.
 */
class SegmentPrefetch {
  private readonly queue: { size: number; decoded: Promise<DecodedTransaction[]> }[] = [];
  private next = 0;
  private downloading = 0;
  private held = 0;

  constructor(
    private readonly segs: readonly SegmentInfo[],
    private readonly parallelism: number,
    private readonly fetch: (seg: SegmentInfo) => Promise<Buffer>,
    private readonly decode: (seg: SegmentInfo, bytes: Buffer) => DecodedTransaction[],
  ) {
    this.fill();
  }

  /** The next segment's transactions, in plan order. */
  take(): Promise<DecodedTransaction[]> {
    const entry = this.queue.shift()!;
    this.held -= entry.size;
    this.fill();
    return entry.decoded;
  }

  private fill(): void {
    while (this.next < this.segs.length && this.downloading < this.parallelism && (this.queue.length === 0 || this.held + this.segs[this.next]!.size <= PREFETCH_BYTES)) {
      const seg = this.segs[this.next++]!;
      this.downloading++;
      this.held += seg.size;
      const decoded = this.fetch(seg)
        .finally(() => {
          this.downloading--;
          this.fill();
        })
        .then((bytes) => this.decode(seg, bytes));
      decoded.catch(() => {}); // observed when its turn comes; until then a failure must not count as unhandled
      this.queue.push({ size: seg.size, decoded });
    }
  }
}

// Runs in a worker thread: loads SQLite at once, then waits for the file to
// check (read-only, so it cannot change a byte). Posts 'ok' or the first problem.
const INTEGRITY_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
parentPort.once('message', ({ file, bytes }) => {
  let db;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    // Reading through a mapping instead of a read() per page halves the check's time.
    db.pragma('mmap_size=' + bytes);
    const row = db.pragma('integrity_check(1)')[0];
    const report = row ? String(row.integrity_check) : 'no result';
    // The report starts with a "*** in database main ***" heading: the problem is the line after it.
    parentPort.postMessage(report === 'ok' ? report : report.split('\\n').find((line) => !line.startsWith('***')) || report);
  } catch (err) {
    parentPort.postMessage(String(err && err.message).split('\\n')[0]);
  } finally {
    if (db) db.close();
    parentPort.close();
  }
});`;
const SQLITE_MODULE = createRequire(import.meta.url).resolve('better-sqlite3');

/**
 * SQLite's verdict on the file, from another thread so the checksum pass
 * runs meanwhile. The thread starts (and loads SQLite, ~50 ms) when this is
 * made, so that the check starts at once when the file is ready.
 */
class IntegrityCheck {
  private readonly worker = new Worker(INTEGRITY_WORKER, { eval: true, workerData: { sqlite: SQLITE_MODULE } });
  private readonly verdict: Promise<string>;

  constructor() {
    this.worker.unref(); // a restore that fails before run() must not keep the process alive
    this.verdict = new Promise((resolve, reject) => {
      this.worker.once('message', (verdict: string) => resolve(verdict));
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`the integrity check's worker exited with code ${code} before answering`)));
    });
    this.verdict.catch(() => {}); // observed by run(); unobserved after cancel()
  }

  run(file: string, bytes: number): Promise<string> {
    this.worker.ref();
    this.worker.postMessage({ file, bytes });
    return this.verdict;
  }

  /** Stops the thread (the restore failed); waits until it is gone, so it holds no file open. */
  async cancel(): Promise<void> {
    await this.worker.terminate();
  }
}

function removeSidecars(file: string): void {
  for (const suffix of SIDECARS) fs.rmSync(file + suffix, { force: true });
}

/**
 * The database checksum of a file, read in slices (the next read overlaps
 * the current slice's CRC). Through the page cache, where the snapshot's
 * pages already are: written past it, each chunk was read back in the
 * background as soon as it was written (DirectFileWriter's readBack), so
 * neither this read nor the integrity check waits for the disk here.
 */
async function fileChecksum(file: string, pageSize: number): Promise<{ checksum: bigint; bytes: number }> {
  const fh = await fsp.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size % pageSize !== 0) return { checksum: 0n, bytes: size };
    const lockPage = lockPageNumber(pageSize);
    const buffers = [Buffer.allocUnsafe(Math.min(VERIFY_SLICE, size)), Buffer.allocUnsafe(Math.min(VERIFY_SLICE, size))];
    const readAt = async (pos: number, k: number) => {
      const buf = buffers[k % 2]!.subarray(0, Math.min(VERIFY_SLICE, size - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead !== buf.length) throw new RestoreError(`${file}: read ${bytesRead} of ${buf.length} bytes at ${pos} while reading it back`);
      return buf;
    };
    let xor = 0n;
    let pending = size > 0 ? readAt(0, 0) : undefined;
    for (let pos = 0, k = 0; pending; k++) {
      const slice = await pending;
      const next = pos + slice.length;
      pending = next < size ? readAt(next, k + 1) : undefined;
      xor ^= pageChecksumsXor(slice, pageSize, pos / pageSize + 1, lockPage);
      pos = next;
    }
    return { checksum: xor | CHECKSUM_FLAG, bytes: size };
  } finally {
    await fh.close();
  }
}
