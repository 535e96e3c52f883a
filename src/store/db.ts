// DB: one database. The only code that touches its files: it turns commits
// seen by the FUSE layer into transaction records (TXID, checksums, pages),
// appends them to the database's log (rollback modes: before the commit
// returns; WAL mode: from the commit's notice, before anything could remove
// its frames), and keeps the position that <db>-pos shows.
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { ErrnoName } from '../fuse/index.js';
import { lockPageNumber } from '../sqlite/dbheader.js';
import { parseWalHeader, scanWalFrames, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, walTransactionEnd, type WalTransaction } from '../sqlite/wal.js';
import { formatHex64 as hex, formatPosition, PageChecksums, pageChecksum } from '../txlog/checksum.js';
import type { TransactionFile } from '../txlog/txfile.js';
import { TransactionLog } from './txlog-dir.js';
import { allPages, databaseFileInfo, logicalChecksum, readDatabaseHeader, readPages, scanWal, walPages } from './pages.js';
import { ReadScratch } from './file-io.js';
import { checkPageSizeChange, DatabaseWriter, moveFile, STAGE_LIMIT, walModeOf, walModeOfFile } from './apply.js';
import { imageIsRecordedState, openImageUnderLocks, type ImagePages } from './image-read.js';
import { hasHotJournal, rollBackHotJournal } from './recovery.js';
import { ApplyError, type DbContext, type Position, type ReceivedTransaction, type Role, type SnapshotPosition, type WalCursor } from './types.js';

/** The unit the native layer records dirty writes in (SQLite's smallest page). */
export const DIRTY_UNIT = 512;
/** How many recent positions a primary remembers, to name the TXID of a snapshot by its checksum. */
const RECENT_POSITIONS = 4096;

export class DB extends EventEmitter {
  readonly file: string;
  readonly walFile: string;
  readonly log: TransactionLog;
  pageSize = 0;
  commitSize = 0;
  txid = 0;
  lastCommit = new Date(0);
  private checksums?: PageChecksums;
  private wal?: WalCursor;
  private dbSyncedSinceCommit = false;
  private walFd?: number;
  /** A notice's WAL frames are read here: their pages are copied into the log's record before the next read. */
  private readonly walScratch = new ReadScratch(4 * 1024 * 1024);
  /** The end of a commit frame whose checksums SQLite is about to rewrite (see walCommit). */
  private pendingRecksum?: number;
  private imagePositionDistrusted = false; // see streamedImageDiffers
  private restoredChecksum = 0n; // the log's, while the files do not yet say more
  role: Role = 'primary';
  /** Why the files do not match the log, when recovery found they do not; cleared by repair or a snapshot. */
  doubt?: string;
  private readonly recent = new Map<bigint, number>(); // checksum -> TXID of recent commits
  private writer?: DatabaseWriter;

  constructor(readonly name: string, private readonly ctx: DbContext) {
    super();
    this.file = path.join(ctx.dbDir, name);
    this.walFile = this.file + '-wal';
    this.log = new TransactionLog(path.join(ctx.logRoot, name), ctx.compress, ctx.segmentMaxAge);
  }

  get position(): Position {
    if (this.txid === 0) return { txid: 0, checksum: 0n };
    return { txid: this.txid, checksum: this.checksums?.checksum ?? this.restoredChecksum };
  }

  /**
   * Flags the database's files in the native layer for a role and publishes
   * <db>-pos. A primary captures commits; on a replica the files are
   * read-only to everyone but the daemon (the -shm stays writable: readers
   * keep their read marks there) and nothing asks JavaScript.
   */
  attach(role: Role = this.role): void {
    this.role = role;
    this.writer?.forget(); // its notes on the files held while they were the daemon's alone
    const f = this.ctx.files;
    const directIo = !this.ctx.cacheJournals; // the same on both roles: docs/fuse.md, "Direct I/O"
    if (role === 'primary') {
      f.setFile(this.name, { events: true, fsync: true, dirtyPages: true, pageSize: DIRTY_UNIT });
      // Commits in the WAL are notices (the write does not wait for us) unless
      // strict-verify must be able to refuse one; docs/fuse.md says why.
      f.setFile(this.name + '-wal', { events: true, wal: true, walWait: this.ctx.strictVerify, directIo });
      f.setFile(this.name + '-journal', { events: true, journal: true, directIo });
    } else {
      f.setFile(this.name, { readOnly: true });
      for (const suffix of ['-wal', '-journal']) f.setFile(this.name + suffix, { readOnly: true, directIo });
    }
    f.setFile(this.name + '-shm', {});
    this.publishPosition();
  }

  /**
   * Becomes a replica without cutting a transaction in half: waits (at most
   * timeoutMs) until no write transaction is in progress, so the one under
   * way commits and is recorded, then makes the files read-only while
   * holding the writer's lock. False when it had to give up waiting.
   */
  async stopWrites(timeoutMs: number): Promise<boolean> {
    if (this.role === 'replica' || !this.ctx.mountDir || !fs.existsSync(this.file)) {
      this.attach('replica');
      return true;
    }
    const stopped = await this.writerFor().betweenTransactions(this.walModeOnDisk(), timeoutMs, () => this.attach('replica'));
    await this.ctx.files.settled(); // the last commits' notices: the position is final after this
    return stopped;
  }

  detach(): void {
    const f = this.ctx.files;
    for (const suffix of ['', '-wal', '-journal', '-shm']) f.setFile(this.name + suffix, {});
    f.setVirtualFile(this.name + '-pos', null);
    this.closeWal();
    this.log.close();
    void this.writer?.close();
    this.writer = undefined;
  }

  /** Makes the log durable and releases open files (on a clean stop). */
  close(): void {
    this.log.sync();
    this.log.close();
    this.closeWal();
    void this.writer?.close();
    this.writer = undefined;
  }

  /** The position a replica asks the primary for: none while its files are in doubt. */
  get streamPosition(): Position {
    return this.doubt ? { txid: 0, checksum: 0n } : this.position;
  }

  /** The TXID at which the database had this checksum, if it was recent. */
  txidOfChecksum(checksum: bigint): number | undefined {
    if (checksum === this.position.checksum) return this.txid;
    return this.recent.get(checksum);
  }

  /**
   * The pages as SQLite would read them now, under its locks until closed (image-read.ts), or undefined (no mount,
   * locks not granted in time); `position` names them when they are the last recorded commit's state.
   */
  async openImage(timeoutMs: number): Promise<{ image: ImagePages; position?: Position } | undefined> {
    const image = this.ctx.mountDir ? await openImageUnderLocks(path.join(this.ctx.mountDir, this.name), this.file, timeoutMs) : undefined;
    const trusted = image && !this.doubt && this.pendingRecksum === undefined && !this.imagePositionDistrusted;
    return image && { image, position: trusted && imageIsRecordedState(image, { pageSize: this.pageSize, commitSize: this.commitSize, wal: this.wal }) ? this.position : undefined };
  }

  /** An image named by openImage streamed with another checksum: from now on images are named by reading them. */
  streamedImageDiffers(expected: bigint, actual: bigint): void {
    this.imagePositionDistrusted = true;
    this.ctx.log.error({ db: this.name, expected: hex(expected), actual: hex(actual) }, 'a snapshot image differed from the position it was named by');
  }

  private remember(txid: number, checksum: bigint): void {
    this.recent.delete(checksum);
    this.recent.set(checksum, txid);
    if (this.recent.size > RECENT_POSITIONS) this.recent.delete(this.recent.keys().next().value!);
  }

  private publishPosition(): void {
    const p = this.position;
    this.ctx.files.setVirtualFile(this.name + '-pos', formatPosition(p.txid, p.checksum) + '\n', this.lastCommit);
  }

  /** Restores state from the log and the files (see recovery.ts). */
  restore(state: { txid: number; pageSize: number; commitSize: number; checksums?: PageChecksums; lastCommit: Date; checksum: bigint }): void {
    this.txid = state.txid;
    this.restoredChecksum = state.checksum;
    this.pageSize = state.pageSize;
    this.commitSize = state.commitSize;
    this.checksums = state.checksums;
    this.lastCommit = state.lastCommit;
  }

  setWalCursor(cursor: WalCursor): void {
    this.wal = cursor;
  }

  // ---- commit capture -------------------------------------------------

  /**
   * Writes completed WAL commit frames, the last ending at byte `end`: records
   * every transaction committed up to there. When the writes did not wait
   * (waiting false) a commit that cannot be recorded cannot be refused
   * either: the database is in doubt and repaired, which records the files'
   * state as one full transaction.
   */
  walCommit(end: number, waiting: boolean): void | ErrnoName {
    this.repair(); // a commit the log could not take before: the files' state first
    const refused = this.recordWalCommit(end);
    if (refused && !waiting) {
      this.doubt = `the WAL commit ending at byte ${end} could not be recorded`;
      this.repair();
    }
    return refused;
  }

  private recordWalCommit(end: number): void | ErrnoName {
    // The -wal stays open between commits; walReset() closes it.
    this.walFd ??= fs.openSync(this.walFile, 'r');
    const fd = this.walFd;
    const headerBytes = Buffer.allocUnsafe(WAL_HEADER_SIZE);
    fs.readSync(fd, headerBytes, 0, WAL_HEADER_SIZE, 0);
    const header = parseWalHeader(headerBytes);
    if (!this.wal || this.wal.salt1 !== header.salt1 || this.wal.salt2 !== header.salt2) {
      // A new WAL generation (first use, or restarted after a checkpoint).
      this.wal = { salt1: header.salt1, salt2: header.salt2, frameEnd: WAL_HEADER_SIZE, seed: header.checksum };
    }
    if (end <= this.wal.frameEnd) return; // recorded already (the kernel retried the write)
    const frameSize = WAL_FRAME_HEADER_SIZE + header.pageSize;
    const bytes = this.walScratch.take(end - this.wal.frameEnd);
    const n = fs.readSync(fd, bytes, 0, bytes.length, this.wal.frameEnd);
    const firstFrame = (this.wal.frameEnd - WAL_HEADER_SIZE) / frameSize;
    const scan = scanWalFrames(header, bytes.subarray(0, n), firstFrame, this.wal.seed);
    const endFrame = (end - WAL_HEADER_SIZE) / frameSize;
    const before = this.position;
    try {
      this.log.batch(() => {
        for (const tx of scan.transactions) this.recordWalTransaction(tx, header.pageSize, header.salt1, header.salt2);
      });
    } catch (err) {
      this.forgetUnlogged(before, err as Error);
      throw err;
    }
    this.wal.frameEnd = WAL_HEADER_SIZE + scan.committedFrameEnd * frameSize;
    this.wal.seed = scan.checksum;
    if (scan.committedFrameEnd !== endFrame) {
      if (this.pendingRecksum === undefined && (scan.stop === 'checksum-mismatch' || scan.stop === 'salt-mismatch')) {
        // A transaction that rewrote a page it had spilled to the WAL: SQLite
        // fixes the frames' checksums and salts right after this write, and
        // the native layer reports the rewrite of the commit frame's header;
        // the transaction is recorded then.
        this.pendingRecksum = end;
        this.ctx.log.debug({ db: this.name, frame: scan.validFrameEnd }, 'WAL checksums are rewritten after this commit frame; recording at the rewrite');
        return scan.transactions.length ? this.afterCommit() : undefined;
      }
      this.pendingRecksum = undefined;
      this.ctx.log.error({ db: this.name, stop: scan.stop, frame: scan.validFrameEnd }, 'WAL frames do not verify up to the commit; refusing the commit');
      return 'EIO';
    }
    this.pendingRecksum = undefined;
    return this.afterCommit();
  }

  recordWalTransaction(tx: WalTransaction, pageSize: number, salt1: number, salt2: number): void {
    this.record(walPages(tx), tx.commitSize, pageSize, { walSalt1: salt1, walSalt2: salt2, walFrameEnd: walTransactionEnd(tx, pageSize) });
  }

  /** A live rollback journal was invalidated: the database file holds a commit, or a rollback. */
  journalInvalidated(): void | ErrnoName {
    this.repair(); // a commit the log could not take before: the files' state first
    const units = this.ctx.files.takeDirtyPages(this.name);
    if (units.length === 0) return; // nothing reached the database file: a rollback
    const fd = fs.openSync(this.file, 'r');
    try {
      const info = readDatabaseHeader(fd);
      if (!info) return; // not (yet) a database
      const { pageSize, pageCount: commitSize } = info;
      let pgnos: number[];
      if (pageSize !== this.pageSize) {
        pgnos = Array.from({ length: commitSize }, (_, i) => i + 1); // a new page size rewrites every page
      } else {
        const set = new Set<number>();
        for (const unit of units) {
          const pgno = Math.floor(((unit - 1) * DIRTY_UNIT) / pageSize) + 1;
          if (pgno <= commitSize) set.add(pgno);
        }
        pgnos = [...set].sort((a, b) => a - b);
      }
      const pages = readPages(fd, pageSize, pgnos);
      const before = this.position;
      if (this.txid > 0 && pageSize === this.pageSize && commitSize === this.commitSize && this.unchangedBy(pages)) {
        return; // a rolled-back transaction restored what it had written
      }
      this.record(pages, commitSize, pageSize, undefined, before);
    } finally {
      fs.closeSync(fd);
    }
    if (this.dbSyncedSinceCommit) this.log.sync(); // SQLite made the database durable: so are we
    this.dbSyncedSinceCommit = false;
    return this.afterCommit();
  }

  /** O(pages written), not O(database): compares each page with its recorded checksum. */
  private unchangedBy(pages: Map<number, Buffer>): boolean {
    for (const [pgno, data] of pages) if (pageChecksum(pgno, data) !== this.checksums!.get(pgno)) return false;
    return true;
  }

  /** SQLite fsynced the database file: a commit in rollback mode, a checkpoint in WAL mode. */
  databaseSynced(): void {
    this.log.sync(); // a checkpoint may be followed by a WAL reset: the log must not depend on the WAL
    this.dbSyncedSinceCommit = true;
    if (this.wal) this.ctx.files.takeDirtyPages(this.name); // checkpoint writes, not commits
  }

  /** The -wal was truncated or deleted: its frames are gone, so the log must stand alone. */
  walReset(): void {
    this.log.sync();
    this.wal = undefined;
    this.closeWal();
  }

  private closeWal(): void {
    if (this.walFd !== undefined) fs.closeSync(this.walFd);
    this.walFd = undefined;
  }

  private record(pages: Map<number, Buffer>, commitSize: number, pageSize: number, wal?: Pick<TransactionFile, 'walSalt1' | 'walSalt2' | 'walFrameEnd'>, before = this.position): void {
    if (!this.checksums || pageSize !== this.pageSize) this.checksums = new PageChecksums(pageSize);
    const lockPage = lockPageNumber(pageSize);
    const sorted = [...pages.entries()].filter(([pgno]) => pgno <= commitSize && pgno !== lockPage).sort((a, b) => a[0] - b[0]);
    for (const [pgno, data] of sorted) this.checksums.set(pgno, data);
    this.checksums.truncate(commitSize);
    const now = new Date();
    const tx: TransactionFile = {
      pageSize,
      commitSize,
      minTxid: this.txid + 1,
      maxTxid: this.txid + 1,
      timestamp: now.getTime(),
      preApplyChecksum: before.checksum,
      postApplyChecksum: this.checksums.checksum,
      nodeId: this.ctx.nodeId,
      walSalt1: wal?.walSalt1 ?? 0,
      walSalt2: wal?.walSalt2 ?? 0,
      walFrameEnd: wal?.walFrameEnd ?? 0,
      pages: sorted.map(([pgno, data]) => ({ pgno, data })),
    };
    try {
      this.log.append(tx);
    } catch (err) {
      this.forgetUnlogged(before, err as Error);
      throw err;
    }
    this.remember(tx.maxTxid, tx.postApplyChecksum);
    this.txid = tx.maxTxid;
    this.pageSize = pageSize;
    this.commitSize = commitSize;
    this.lastCommit = now;
    this.emit('commit', tx); // its pages may lie in a reused buffer (walScratch): listeners must not keep them
  }

  /**
   * A commit could not be written to the log: the position goes back to the
   * last one logged (`before`, or a later one the log took before failing,
   * found among the recent positions) and the database is in doubt, so its
   * next commit first records the files' whole state (repair), since the
   * page checksums were advanced.
   */
  private forgetUnlogged(before: Position, err: Error): void {
    const logged = this.log.last?.maxTxid ?? 0;
    let at = before;
    for (const [checksum, txid] of this.recent) if (txid === logged && txid > before.txid) at = { txid, checksum };
    for (const [checksum, txid] of this.recent) if (txid > at.txid) this.recent.delete(checksum);
    this.txid = at.txid;
    this.checksums = undefined;
    this.restoredChecksum = at.checksum;
    this.doubt = `a commit could not be written to the transaction log (${err.message})`;
  }

  /** Records the database's whole current state as one transaction (first sight, or repair). */
  recordFullState(pages: Map<number, Buffer>, pageSize: number, commitSize: number): void {
    const before = this.position;
    this.checksums = new PageChecksums(pageSize);
    this.record(pages, commitSize, pageSize, undefined, before);
  }

  private afterCommit(): void | ErrnoName {
    if (this.ctx.strictVerify) {
      const problem = this.verify();
      if (problem) {
        this.ctx.log.error({ db: this.name, txid: this.txid }, `strict-verify: ${problem}`);
        return 'EIO';
      }
    }
    // An application reading <db>-pos right after its commit sees it: the read settles the notices first.
    this.publishPosition();
    return undefined;
  }

  /**
   * A primary's answer to doubt: records the files' current state (the
   * database file and every committed WAL frame) as one full transaction.
   */
  repair(): void {
    if (!this.doubt) return;
    const full = allPages(this.file, this.walFile);
    if (full) {
      const logged = this.position;
      this.recordFullState(full.pages, full.pageSize, full.commitSize);
      this.ctx.log.warn(
        { db: this.name, log: formatPosition(logged.txid, logged.checksum), recorded: formatPosition(this.txid, this.position.checksum) },
        `${this.doubt}; recorded its current state as a full transaction`,
      );
      const scan = scanWal(this.walFile, full.pageSize);
      if (scan) this.wal = { salt1: scan.header.salt1, salt2: scan.header.salt2, frameEnd: WAL_HEADER_SIZE + scan.committedFrameEnd * (WAL_FRAME_HEADER_SIZE + full.pageSize), seed: scan.checksum };
      this.log.sync();
    }
    this.doubt = undefined;
    this.publishPosition();
  }

  // ---- replica: applying the primary's records -------------------------

  private writerFor(): DatabaseWriter {
    if (!this.ctx.mountDir) throw new ApplyError(`database ${this.name}: the mount is not serving yet`);
    this.writer ??= new DatabaseWriter(this.name, path.join(this.ctx.mountDir, this.name), this.file, this.ctx.log, this.ctx.files);
    return this.writer;
  }

  /**
   * Applies consecutive transactions from the primary, logged as received:
   * each must start at this database's position, and lead to its post-apply
   * checksum, else the database is in doubt (a snapshot follows).
   */
  async applyTransactions(items: readonly ReceivedTransaction[]): Promise<void> {
    const first = items[0]?.tx;
    if (!first) return;
    const at = this.streamPosition;
    if (first.minTxid !== at.txid + 1 || first.preApplyChecksum !== at.checksum) {
      const theirs = formatPosition(first.minTxid - 1, first.preApplyChecksum);
      throw new ApplyError(`database ${this.name}: transaction ${first.minTxid} has pre-apply position ${theirs}, the replica is at ${formatPosition(at.txid, at.checksum)}`);
    }
    const writer = this.writerFor();
    await writer.exclusive(writer.walMode(), async () => {
      const walAfter = items.reduce((wal, { tx }) => walModeOf(tx, wal), writer.walMode());
      if (walAfter) await writer.prepareWal();
      for (let i = 0; i < items.length; i += STAGE_LIMIT) this.applyStaged(writer, items.slice(i, i + STAGE_LIMIT));
      this.doubt = undefined; // whatever was in doubt was just rewritten from a full first transaction
      writer.finishWalState(walAfter, this.commitSize, this.pageSize);
    });
    this.afterApply();
  }

  /**
   * Checks each transaction, logs them in one write, then writes their pages
   * merged (a stop in between is completed at restart: recovery.ts). After a
   * failed check, the logged ones before it are written; after any other
   * failure the files are in doubt.
   */
  private applyStaged(writer: DatabaseWriter, items: readonly ReceivedTransaction[]): void {
    let failure: unknown;
    try {
      this.log.batch(() => {
        for (const { tx, bytes } of items) {
          checkPageSizeChange(tx, this.pageSize, this.name);
          if (!this.checksums || tx.pageSize !== this.pageSize || tx.minTxid === 1) this.checksums = new PageChecksums(tx.pageSize);
          for (const page of tx.pages) this.checksums.set(page.pgno, page.data);
          this.checksums.truncate(tx.commitSize);
          if (this.checksums.checksum !== tx.postApplyChecksum) {
            this.doubt = `transaction ${tx.maxTxid} leads to checksum ${this.checksums.checksum.toString(16)}, the primary's is ${tx.postApplyChecksum.toString(16)}`;
            throw new ApplyError(`database ${this.name}: ${this.doubt}`, true);
          }
          this.log.appendEncoded(bytes, tx);
          writer.stage(tx.pages, tx.pageSize, tx.commitSize);
          [this.txid, this.pageSize, this.commitSize, this.lastCommit] = [tx.maxTxid, tx.pageSize, tx.commitSize, new Date(tx.timestamp)];
        }
      });
    } catch (err) {
      failure = err;
    }
    try {
      if (failure === undefined || failure instanceof ApplyError) {
        writer.writeStaged(); // what passed its checks is logged
        this.log.markApplied(this.log.last?.maxTxid ?? 0);
      }
    } catch (err) {
      failure = err;
    }
    writer.discardStaged();
    if (failure === undefined) return;
    if (!(failure instanceof ApplyError)) this.doubt ??= `applying transactions failed: ${(failure as Error).message}`;
    throw failure;
  }

  /** Replaces the whole database with a snapshot image (a file beside the mount, already verified). */
  async applySnapshot(image: string, at: SnapshotPosition, checksums: PageChecksums): Promise<void> {
    const writer = this.writerFor();
    const walAfter = walModeOfFile(image);
    // A database this replica does not have yet (replicas create no files): no one can have it open, so the image is moved into place, not copied.
    const moved = !fs.existsSync(this.file) && moveFile(image, this.file);
    await writer.exclusive(writer.walMode(), async () => {
      if (walAfter) await writer.prepareWal();
      if (!moved) await writer.replaceFrom(image);
      writer.finishWalState(walAfter, at.commitSize, at.pageSize);
      this.log.reset(at, 'soon'); // durable in the background: recovery checks a replica's file against its log
      this.checksums = checksums;
      this.txid = at.txid;
      this.pageSize = at.pageSize;
      this.commitSize = at.commitSize;
      this.lastCommit = new Date(at.timestamp);
      this.doubt = undefined;
    });
    this.afterApply();
  }

  /**
   * Moves committed WAL frames into the database file and empties the WAL
   * (a node that was primary, now a replica: applies write the database
   * file alone). The position does not change: the content is the same.
   */
  async foldWal(): Promise<void> {
    const scan = this.pageSize ? scanWal(this.walFile, this.pageSize) : undefined;
    if (!scan || scan.transactions.length === 0 || this.doubt) return;
    const writer = this.writerFor();
    await writer.exclusive(true, async () => {
      await writer.prepareWal();
      for (const tx of scan.transactions) writer.stage([...walPages(tx)].map(([pgno, data]) => ({ pgno, data })), this.pageSize, tx.commitSize);
      writer.writeStaged();
      writer.finishWalState(true, this.commitSize, this.pageSize);
    });
    this.wal = undefined;
    this.closeWal();
    const problem = this.verify();
    if (problem) this.doubt = `after moving the WAL into the database file: ${problem}`;
  }

  /**
   * Brings the files back to the last recorded commit before this node
   * applies the primary's records (it was primary a moment ago): an app's
   * transaction cut off by the switch to read-only leaves a hot journal,
   * rolled back here under the writer's locks, or WAL frames, moved into
   * the database file or dropped by foldWal; a lost -wal is made again.
   */
  async settle(): Promise<void> {
    if (this.doubt) return; // a snapshot replaces it all
    if (hasHotJournal(this.file) && !this.walModeOnDisk()) {
      const writer = this.writerFor();
      // Checked again under the locks: a journal being written is not hot until its writer is gone.
      const rolledBack = await writer.exclusive(false, async () => {
        if (!hasHotJournal(this.file)) return false;
        rollBackHotJournal(this.file);
        await this.ctx.files.invalidate(this.name);
        return true;
      });
      if (!rolledBack) return this.foldWal();
      this.ctx.log.warn({ db: this.name }, 'rolled back a transaction cut off when this node stopped being primary');
      const problem = this.verify();
      if (problem) this.doubt = `after rolling back a cut-off transaction: ${problem}`;
    }
    await this.foldWal();
    if (this.walModeOnDisk() && !fs.existsSync(this.walFile) && this.pageSize && !this.doubt) await this.writerFor().recreateWal(this.commitSize, this.pageSize);
  }

  private walModeOnDisk(): boolean {
    return databaseFileInfo(this.file)?.head.readUInt8(18) === 2;
  }

  /**
   * The positions before each of the last transactions this node committed
   * itself (as primary), oldest first; undefined when the newest was not
   * its own. A new primary compares them with its history to count the
   * ones it never got.
   */
  ownHistory(max = 1000): Position[] | undefined {
    const out: Position[] = [];
    for (let i = this.log.count - 1; i >= 0 && out.length < max; i--) {
      const h = this.log.readHeader(this.log.entry(i));
      if (h.nodeId !== this.ctx.nodeId) break;
      out.push({ txid: h.minTxid - 1, checksum: h.preApplyChecksum });
    }
    return out.length ? out.reverse() : undefined;
  }

  /** This database's checksum at an earlier TXID, while the log still holds the transaction after it. */
  checksumAt(txid: number): bigint | undefined {
    if (txid === this.txid) return this.position.checksum;
    if (txid === 0) return 0n;
    if (txid > this.txid) return undefined;
    const i = this.log.indexOf(txid + 1);
    const entry = i >= 0 ? this.log.entry(i) : undefined;
    return entry && entry.minTxid === txid + 1 ? this.log.readHeader(entry).preApplyChecksum : undefined;
  }

  /** Removes the database's files (the primary deleted it). */
  async removeFiles(): Promise<void> {
    const writer = this.writerFor();
    await writer.exclusive(writer.walMode(), () => writer.removeFiles());
  }

  private afterApply(): void {
    if (this.ctx.strictVerify) {
      const problem = this.verify();
      if (problem) {
        this.doubt = problem;
        throw new ApplyError(`database ${this.name}: strict-verify: ${problem}`, true);
      }
    }
    this.publishPosition();
    this.emit('apply');
  }

  /** Recomputes the checksum from the files; returns what disagrees, if anything. */
  verify(): string | undefined {
    const actual = logicalChecksum(this.file, this.walFile, this.wal?.frameEnd);
    const expected = this.position;
    if (actual.checksum !== expected.checksum) {
      return `checksum ${actual.checksum.toString(16)} of the files differs from position ${formatPosition(expected.txid, expected.checksum)}`;
    }
    return undefined;
  }
}
