// One database's transaction log on disk: append-only segment files, each a
// run of transaction files (docs/format.md) back to back, named by the
// first TXID they hold. A commit appends one record with one write; the
// segment is made durable when SQLite makes its own files durable (sync()),
// as DESIGN.md step 4 says. Creating a file per transaction was measured
// here at ~0.4 ms a commit, more than the whole FUSE round trip.
import fs from 'node:fs';
import path from 'node:path';
import { LogIndex, type LogEntry } from './log-index.js';
import { syncFile, syncPath, writevFully } from './file-io.js';
import { decodeTransaction, decodeTransactionHeader, encodeTransaction, TX_HEADER_SIZE, TxFileError, type TransactionFile, type TransactionHeader } from '../txlog/txfile.js';

const SEGMENT_SUFFIX = '.seg';
const BASE_FILE = 'base';
const APPLIED_FILE = 'applied';

/** Where a reset log starts: the position of the snapshot it continues from. */
export interface LogBase {
  txid: number;
  checksum: bigint;
  pageSize: number;
  commitSize: number;
  timestamp: number;
}
const SEGMENT_LIMIT = 64 * 1024 * 1024;

export function segmentName(firstTxid: number): string {
  return firstTxid.toString(16).padStart(16, '0') + SEGMENT_SUFFIX;
}

function isSegmentName(name: string): boolean {
  return /^[0-9a-f]{16}\.seg$/.test(name);
}

export type { LogEntry } from './log-index.js';

/** The log could not take a record (a full disk, most often): the message names the file and the reason. */
export class LogWriteError extends Error {
  override name = 'LogWriteError';
}

export class TransactionLog {
  private readonly entries = new LogIndex();
  private fd?: number; // the segment being appended to
  private segment?: string;
  private size = 0;
  private openedAt = 0;
  private unsynced = new Set<number>();
  private newSegments = false;
  private batching = 0;
  /** Records appended inside batch(), not yet written, from file offset pendingFrom. */
  private pending: Buffer[] = [];
  private pendingFrom = 0;
  private appliedFd?: number;

  constructor(
    readonly dir: string,
    private readonly compress: boolean,
    /** A new segment starts after this long, so retention can drop whole old ones. */
    private readonly segmentMaxAge = 60_000,
    private readonly segmentLimit = SEGMENT_LIMIT,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /** How many transaction files the log holds. */
  get count(): number {
    return this.entries.length;
  }

  /** The i-th transaction file (0 is the oldest kept). */
  entry(i: number): LogEntry {
    return this.entries.at(i);
  }

  /** Every entry, oldest first (a copy: for tools and tests; the index itself is compact). */
  list(): LogEntry[] {
    return Array.from({ length: this.entries.length }, (_, i) => this.entries.at(i));
  }

  get last(): LogEntry | undefined {
    return this.entries.last;
  }

  /** The newest entries whose last TXID is above `txid`, at most `max` of them, oldest first. */
  entriesAfter(txid: number, max: number): LogEntry[] {
    const out: LogEntry[] = [];
    for (let i = this.entries.length - 1; i >= 0 && out.length < max; i--) {
      const e = this.entries.at(i);
      if (e.maxTxid <= txid) break;
      out.push(e);
    }
    return out.reverse();
  }

  segments(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter(isSegmentName)
      .sort()
      .map((n) => path.join(this.dir, n));
  }

  /**
   * Reads every record of every segment in order, handing each to `check`
   * (which throws to reject it). Stops at the first bad record and returns
   * it with the reason; everything before it is the log.
   */
  scan(check: (tx: TransactionFile) => void): { damaged?: { entry: Pick<LogEntry, 'segment' | 'offset'>; reason: string } } {
    this.closeSegment();
    this.entries.clear();
    for (const segment of this.segments()) {
      const bytes = fs.readFileSync(segment);
      let offset = 0;
      while (offset < bytes.length) {
        try {
          if (bytes.length - offset < TX_HEADER_SIZE) throw new TxFileError(`truncated: ${bytes.length - offset} of ${TX_HEADER_SIZE} header bytes`);
          const header = decodeTransactionHeader(bytes.subarray(offset, offset + TX_HEADER_SIZE), `${path.basename(segment)}@${offset}`);
          if (offset + header.fileSize > bytes.length) throw new TxFileError(`truncated: ${bytes.length - offset} of ${header.fileSize} bytes`);
          const tx = decodeTransaction(bytes.subarray(offset, offset + header.fileSize), `${path.basename(segment)}@${offset}`);
          check(tx);
          this.entries.push({ segment, offset, length: header.fileSize, minTxid: tx.minTxid, maxTxid: tx.maxTxid, timestamp: tx.timestamp, pageSize: tx.pageSize });
          offset += header.fileSize;
        } catch (err) {
          const message = (err as Error).message;
          const reason = message.startsWith('transaction file') ? message : `transaction file ${path.basename(segment)}@${offset}: ${message}`;
          return { damaged: { entry: { segment, offset }, reason } };
        }
      }
    }
    return {};
  }

  read(entry: LogEntry): TransactionFile {
    return decodeTransaction(this.readEncoded([entry]), `${path.basename(entry.segment)}@${entry.offset}`);
  }

  /** The stored bytes of consecutive entries of one segment, with one read. */
  readEncoded(entries: readonly LogEntry[]): Buffer {
    this.flush(); // a reader inside a batch sees what it appended
    const first = entries[0]!;
    const last = entries[entries.length - 1]!;
    const length = last.offset + last.length - first.offset;
    // The segment being appended to is open already: a replica's stream reads there after every commit.
    const open = first.segment === this.segment ? this.fd : undefined;
    const fd = open ?? fs.openSync(first.segment, 'r');
    try {
      const buf = Buffer.allocUnsafe(length);
      const n = fs.readSync(fd, buf, 0, length, first.offset);
      if (n !== length) throw new TxFileError(`transaction log ${path.basename(first.segment)}: ${n} of ${length} bytes at ${first.offset}`);
      return buf;
    } finally {
      if (open === undefined) fs.closeSync(fd);
    }
  }

  /** The header of one entry's transaction file, without reading its body. */
  readHeader(entry: LogEntry): TransactionHeader {
    return decodeTransactionHeader(this.readEncoded([{ ...entry, length: TX_HEADER_SIZE }]), `${path.basename(entry.segment)}@${entry.offset}`);
  }

  /**
   * Entries from index `start` that lie back to back in one segment file,
   * with one page size, up to `maxBytes` (at least one): one read gets them
   * all, and they make one WAL_SEGMENT (docs/protocol.md).
   */
  contiguousFrom(start: number, maxBytes: number): LogEntry[] {
    const batch = [this.entries.at(start)];
    let bytes = batch[0]!.length;
    for (let i = start + 1; i < this.entries.length; i++) {
      const e = this.entries.at(i);
      const prev = batch[batch.length - 1]!;
      if (e.segment !== prev.segment || e.offset !== prev.offset + prev.length || e.pageSize !== prev.pageSize || bytes + e.length > maxBytes) break;
      batch.push(e);
      bytes += e.length;
    }
    return batch;
  }

  /** Index of the entry whose first TXID is `txid`, or -1. */
  indexOf(txid: number): number {
    return this.entries.indexOf(txid);
  }

  /**
   * Starts the log afresh at a position reached without its history (a
   * replica that applied a snapshot): every segment goes, and the position
   * is kept in the file `base` so a restart knows where the log starts.
   */
  reset(base: LogBase, durable: 'now' | 'soon' = 'now'): void {
    this.closeSegment();
    for (const segment of this.segments()) fs.rmSync(segment, { force: true });
    this.entries.clear();
    this.unsynced.clear();
    const file = path.join(this.dir, BASE_FILE);
    const text = JSON.stringify({ ...base, checksum: base.checksum.toString(16) }) + '\n';
    fs.writeFileSync(file + '.tmp', text);
    if (durable === 'now') syncFile(file + '.tmp');
    fs.renameSync(file + '.tmp', file);
    this.newSegments = true; // the directory changed: sync() makes that durable
    if (durable === 'now') this.sync();
    else this.syncSoon(file);
    this.markApplied(base.txid);
  }

  /**
   * reset(…, 'soon'): the base file and the directory are made durable on
   * libuv's pool, while the caller goes on. For a replica's snapshot: that
   * fsync flushes the device's cache, which holds the whole image just
   * written (~0.33 s per 512 MiB here), and a replica needs no durability
   * to be correct: at start, recovery compares the database's full
   * checksum with the log (an unreadable base reads as none) and a
   * mismatch brings a new snapshot.
   */
  private syncSoon(file: string): void {
    const syncing = syncPath(file).then(() => syncPath(this.dir));
    syncing.catch(() => {}); // the next sync() or start finds the files as they are
  }

  /**
   * A replica's note of the last transaction whose pages it wrote: it logs
   * a batch of transactions before it writes their pages, and after a stop
   * in between, recovery writes the pages of the later ones again. Not made
   * durable: a stale note only means more is written again, and the
   * database checksum decides in the end.
   */
  markApplied(txid: number): void {
    this.appliedFd ??= fs.openSync(path.join(this.dir, APPLIED_FILE), 'w');
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(txid));
    fs.writeSync(this.appliedFd, b, 0, 8, 0);
  }

  /** The TXID markApplied() last noted, if any. */
  applied(): number | undefined {
    try {
      const b = fs.readFileSync(path.join(this.dir, APPLIED_FILE));
      return b.length === 8 ? Number(b.readBigUInt64BE(0)) : undefined;
    } catch {
      return undefined;
    }
  }

  /** The position the log starts from when it was reset, if it was. */
  base(): LogBase | undefined {
    try {
      const raw = JSON.parse(fs.readFileSync(path.join(this.dir, BASE_FILE), 'utf8')) as Record<string, unknown>;
      const { txid, pageSize, commitSize, timestamp, checksum } = raw;
      if (typeof txid !== 'number' || typeof pageSize !== 'number' || typeof commitSize !== 'number' || typeof timestamp !== 'number' || typeof checksum !== 'string') return undefined;
      return { txid, pageSize, commitSize, timestamp, checksum: BigInt('0x' + checksum) };
    } catch {
      return undefined;
    }
  }

  /**
   * Runs `fn` with its appends gathered into one write at its end: a burst
   * of commits recorded together costs one system call. If that write fails
   * the records it held are not in the log (the segment is cut back, their
   * entries dropped) and the error is thrown; `last` says what is logged.
   */
  batch<T>(fn: () => T): T {
    this.batching++;
    try {
      return fn();
    } finally {
      if (--this.batching === 0) this.flush();
    }
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const chunks = this.pending;
    this.pending = [];
    try {
      writevFully(this.fd!, chunks, this.pendingFrom); // a short write (a full disk) is retried for the rest, which then fails with the reason
    } catch (err) {
      fs.ftruncateSync(this.fd!, this.pendingFrom); // never leave part of a record
      this.size = this.pendingFrom;
      this.entries.truncate(this.entries.length - chunks.length);
      throw new LogWriteError(`cannot write the transaction log ${this.segment}: ${(err as Error).message}`);
    }
  }

  /** Appends one transaction file, written at once or at the end of the batch (durable at the next sync()). */
  append(tx: TransactionFile): LogEntry {
    return this.appendEncoded(encodeTransaction(tx, { compress: this.compress }), tx);
  }

  /** Appends a transaction file already encoded (a replica stores the primary's bytes as they came). */
  appendEncoded(bytes: Buffer, tx: Pick<LogEntry, 'minTxid' | 'maxTxid' | 'timestamp' | 'pageSize'>): LogEntry {
    const lastTxid = this.entries.lastTxid;
    if (lastTxid !== undefined && tx.minTxid !== lastTxid + 1) {
      throw new TxFileError(`transaction ${tx.minTxid} does not follow ${lastTxid} in ${this.dir}`);
    }
    if (this.fd === undefined || this.size >= this.segmentLimit || Date.now() - this.openedAt > this.segmentMaxAge) {
      this.flush();
      this.openSegment(tx.minTxid);
    }
    const offset = this.size;
    if (this.pending.length === 0) this.pendingFrom = offset;
    this.pending.push(bytes);
    this.size += bytes.length;
    this.unsynced.add(this.fd!);
    const entry = { segment: this.segment!, offset, length: bytes.length, minTxid: tx.minTxid, maxTxid: tx.maxTxid, timestamp: tx.timestamp, pageSize: tx.pageSize };
    this.entries.push(entry);
    if (this.batching === 0) this.flush(); // outside a batch, a batch of one
    return entry;
  }

  private openSegment(firstTxid: number): void {
    const last = this.last;
    // Continue the newest segment after a restart while it has room.
    if (this.fd === undefined && last && fs.existsSync(last.segment)) {
      const size = fs.statSync(last.segment).size;
      if (size < this.segmentLimit && size === last.offset + last.length) {
        this.fd = fs.openSync(last.segment, 'r+');
        this.segment = last.segment;
        this.size = size;
        this.openedAt = Date.now();
        return;
      }
    }
    if (this.fd !== undefined && this.unsynced.has(this.fd)) fs.fdatasyncSync(this.fd);
    this.closeSegment();
    const segment = path.join(this.dir, segmentName(firstTxid));
    try {
      this.fd = fs.openSync(segment, 'w+'); // read too: readEncoded
    } catch (err) {
      throw new LogWriteError(`cannot create the transaction log segment ${segment}: ${(err as Error).message}`);
    }
    this.segment = segment;
    this.size = 0;
    this.openedAt = Date.now();
    this.newSegments = true;
  }

  private closeSegment(): void {
    this.flush();
    if (this.fd !== undefined) {
      this.unsynced.delete(this.fd);
      fs.closeSync(this.fd);
    }
    this.fd = undefined;
    this.segment = undefined;
  }

  /** Makes every appended record, and new segments' directory entries, durable. */
  sync(): void {
    this.flush();
    for (const fd of this.unsynced) fs.fdatasyncSync(fd);
    this.unsynced.clear();
    if (this.newSegments) {
      syncFile(this.dir);
      this.newSegments = false;
    }
  }

  close(): void {
    this.closeSegment();
    if (this.appliedFd !== undefined) fs.closeSync(this.appliedFd);
    this.appliedFd = undefined;
  }

  /**
   * Moves the log from a damaged record on out of the way (kept, never
   * deleted): the bytes from that record to the end of its segment, and all
   * later segments. Returns where they went.
   */
  quarantine(from: { segment: string; offset: number }, reason: string): string {
    this.closeSegment();
    const dest = path.join(this.dir, `quarantine-${Date.now()}`);
    fs.mkdirSync(dest, { recursive: true });
    fs.writeFileSync(path.join(dest, 'REASON'), reason + '\n');
    const tail = fs.readFileSync(from.segment).subarray(from.offset);
    fs.writeFileSync(path.join(dest, `${path.basename(from.segment)}.from-${from.offset}`), tail);
    if (from.offset === 0) fs.rmSync(from.segment);
    else fs.truncateSync(from.segment, from.offset);
    for (const segment of this.segments()) {
      if (segment > from.segment) fs.renameSync(segment, path.join(dest, path.basename(segment)));
    }
    let keep = this.entries.length;
    while (keep > 0) {
      const e = this.entries.at(keep - 1);
      if (e.segment < from.segment || (e.segment === from.segment && e.offset < from.offset)) break;
      keep--;
    }
    this.entries.truncate(keep);
    return dest;
  }

  /**
   * Deletes whole segments older than `before` (ms), never the newest one,
   * nor one holding TXID `keepFrom` or later (not yet in the backup).
   */
  enforceRetention(before: number, keepFrom = Infinity): number {
    let removed = 0;
    const segments = this.entries.segmentSummaries;
    while (segments.length > 1) {
      const { name, maxTimestamp, maxTxid } = segments[0]!;
      if (maxTimestamp >= before || maxTxid >= keepFrom) break;
      fs.rmSync(name, { force: true });
      this.entries.dropOldestSegment();
      removed++;
    }
    return removed;
  }
}
