// The primary's backup: ships each database's transaction log to the
// bucket, off the commit path. Every `sync-interval` the transactions since
// the last upload go up as one segment object (or a few, when large); a
// snapshot starts each generation and is repeated every
// `snapshot-interval`. When the bucket fails, uploads back off and retry;
// the local log keeps everything not yet uploaded (retentionFloor), so
// nothing is lost while S3 is down. Only a primary runs this.
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { BackupConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import type { DB } from '../store/db.js';
import type { Store } from '../store/store.js';
import { takeSnapshot } from '../replication/snapshot.js';
import { RECORD_HEADER_SIZE } from '../replication/records.js';
import { formatPosition } from '../txlog/checksum.js';
import { readCatalog, segmentChain, type Generation, type SegmentInfo } from './catalog.js';
import { compactWindows } from './compaction.js';
import { newGenerationId, type BackupLayout } from './layout.js';
import { encodeLogSegmentObject, encodeSnapshotObject } from './objects.js';
import type { ObjectStore } from './object-store.js';
import { enforceBackupRetention } from './retention.js';

/** Bytes of transaction files per segment object, well under a record's 65 MiB payload limit. */
const SEGMENT_OBJECT_BYTES = 16 * 1024 * 1024;
const MAX_BACKOFF_MS = 10_000;
/** Offset of the post-apply checksum in a record header (docs/protocol.md). */
const OFF_POST_APPLY = 40;
const RETENTION_CHECK_MS = 60 * 60 * 1000;

/** One database's backup as this node knows it. */
export interface DbBackupStatus {
  db: string;
  generation?: string;
  /** The last TXID in the bucket (0 before the first upload). */
  txid: number;
  position: string;
  /** Transactions committed here and not yet uploaded. */
  pending: number;
  /** Segment objects this node uploaded for the database since it started. */
  uploads: number;
  lastUploadAt?: number;
  lastSnapshotTxid?: number;
  lastSnapshotAt?: number;
  /** The last upload error while it lasts. */
  error?: string;
}

interface DbState {
  generation?: string;
  txid: number;
  checksum: bigint;
  snapshotAt: number;
  snapshotTxid?: number;
  lastUploadAt?: number;
  /** Set when the bucket must get a new generation (first backup, history changed). */
  needsGeneration: boolean;
  /** The current generation's segment objects, ascending. */
  segments: SegmentInfo[];
  /** Compaction windows ending at or before this TXID were looked at. */
  compactedTo: number;
  uploads: number;
  known: boolean;
  error?: string;
}

export interface UploaderOptions {
  store: Store;
  objects: ObjectStore;
  layout: BackupLayout;
  config: BackupConfig;
  /** Where the mount serves: snapshots are read through it, by SQLite. */
  mountDir: string;
  log: Logger;
}

export class BackupUploader extends EventEmitter {
  private readonly state = new Map<string, DbState>();
  private running = false;
  private loop?: Promise<void>;
  private abort = new AbortController();
  private wake?: () => void;
  private failures = 0;
  private lastRetention = 0;
  readonly stats = { uploads: 0, snapshots: 0, bytes: 0, errors: 0 };

  constructor(private readonly opts: UploaderOptions) {
    super();
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Begins uploading (this node became primary). What the bucket holds is read again first. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    for (const s of this.state.values()) s.known = false;
    this.loop = this.run();
  }

  /** Stops at once (this node is no longer primary): an upload in flight is abandoned. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  /** A clean stop: one last pass for what is committed, within `timeoutMs`, then stop. */
  async flushAndStop(timeoutMs: number): Promise<void> {
    if (!this.running) return;
    const timer = setTimeout(() => this.abort.abort(), timeoutMs);
    try {
      this.running = false; // the loop ends after its pass
      this.wake?.();
      await this.loop;
      if (!this.abort.signal.aborted) await this.pass().catch(() => undefined);
    } finally {
      clearTimeout(timer);
      this.abort.abort();
    }
  }

  /** The lowest TXID the local log must keep for the backup (undefined: no constraint). */
  retentionFloor(db: string): number | undefined {
    if (!this.running) return undefined;
    const s = this.state.get(db);
    return s?.known ? s.txid + 1 : 0;
  }

  status(): DbBackupStatus[] {
    const out: DbBackupStatus[] = [];
    for (const db of this.opts.store.dbs.values()) {
      const s = this.state.get(db.name);
      out.push({
        db: db.name,
        generation: s?.generation,
        txid: s?.txid ?? 0,
        position: formatPosition(s?.txid ?? 0, s?.checksum ?? 0n),
        pending: Math.max(0, db.position.txid - (s?.txid ?? 0)),
        uploads: s?.uploads ?? 0,
        lastUploadAt: s?.lastUploadAt,
        lastSnapshotTxid: s?.snapshotTxid,
        lastSnapshotAt: s?.snapshotAt || undefined,
        error: s?.error,
      });
    }
    return out;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const ok = await this.pass();
      if (!this.running) break;
      this.failures = ok ? 0 : this.failures + 1;
      const delay = ok ? this.opts.config.syncInterval : Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(this.failures - 1, 5));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** One round over every database; false if any failed. */
  private async pass(): Promise<boolean> {
    let ok = true;
    for (const db of [...this.opts.store.dbs.values()]) {
      if (this.abort.signal.aborted) return ok;
      if (db.position.txid === 0) continue; // created, nothing committed yet
      const s = this.stateOf(db.name);
      try {
        await this.backUp(db, s);
        if (s.error) this.opts.log.info({ db: db.name, txid: s.txid }, 'backup caught up');
        s.error = undefined;
      } catch (err) {
        if (this.abort.signal.aborted) return ok;
        ok = false;
        this.stats.errors++;
        const message = (err as Error).message.split('\n')[0]!;
        if (message !== s.error) this.opts.log.warn({ db: db.name, err: message, pending: db.position.txid - s.txid }, 'backup upload failed; retrying (the local log is kept)');
        s.error = message;
      }
    }
    if (ok && Date.now() - this.lastRetention > RETENTION_CHECK_MS) await this.retention();
    return ok;
  }

  private stateOf(name: string): DbState {
    let s = this.state.get(name);
    if (!s) this.state.set(name, (s = { txid: 0, checksum: 0n, snapshotAt: 0, needsGeneration: false, known: false, segments: [], compactedTo: 0, uploads: 0 }));
    return s;
  }

  private async backUp(db: DB, s: DbState): Promise<void> {
    if (!s.known) await this.resume(db, s);
    if (s.needsGeneration) await this.snapshot(db, s, true);
    await this.uploadSegments(db, s);
    await this.compact(db, s);
    if (Date.now() - s.snapshotAt >= this.opts.config.snapshotInterval && db.position.txid > (s.snapshotTxid ?? 0)) {
      await this.snapshot(db, s, false);
      await this.retention();
    }
  }

  /** Reads where the newest generation ends and whether this node's log continues it. */
  private async resume(db: DB, s: DbState): Promise<void> {
    const { objects, layout } = this.opts;
    const gens = await readCatalog(objects, layout, db.name);
    const gen = [...gens].reverse().find((g) => g.snapshots.length > 0);
    s.known = true;
    s.needsGeneration = true;
    if (!gen) return;
    const end = await this.endOf(gen);
    s.snapshotAt = gen.snapshots[gen.snapshots.length - 1]!.lastModified;
    s.snapshotTxid = gen.snapshots[gen.snapshots.length - 1]!.txid;
    if (end && this.continues(db, end)) {
      Object.assign(s, { generation: gen.id, txid: end.txid, checksum: end.checksum, needsGeneration: false, segments: gen.segments, compactedTo: s.snapshotTxid });
      this.opts.log.info({ db: db.name, generation: gen.id, txid: end.txid }, 'backup continues its generation');
    } else {
      const why = end ? `it ends at ${formatPosition(end.txid, end.checksum)}, not in this node's history` : 'its end cannot be read';
      this.opts.log.info({ db: db.name, previous: gen.id, why }, 'backup starts a new generation');
    }
  }

  /** The position a generation's newest contiguous object ends at: the checksum is in its first record header. */
  private async endOf(gen: Generation): Promise<{ txid: number; checksum: bigint } | undefined> {
    const snap = gen.snapshots[gen.snapshots.length - 1]!;
    const chain = segmentChain(gen, snap.txid);
    if (chain.gapAt !== undefined) return undefined;
    const last = chain.segments[chain.segments.length - 1];
    const key = last?.key ?? snap.key;
    const header = await this.opts.objects.get(key, { start: 0, end: RECORD_HEADER_SIZE });
    if (header.length < RECORD_HEADER_SIZE) return undefined;
    return { txid: last?.maxTxid ?? snap.txid, checksum: header.readBigUInt64BE(OFF_POST_APPLY) };
  }

  /** Does this database's history pass through `at`? */
  private continues(db: DB, at: { txid: number; checksum: bigint }): boolean {
    const mine = db.position;
    if (mine.txid === at.txid) return mine.checksum === at.checksum;
    if (mine.txid < at.txid) return false;
    const next = db.log.indexOf(at.txid + 1);
    return next >= 0 && db.log.readHeader(db.log.entry(next)).preApplyChecksum === at.checksum;
  }

  private async snapshot(db: DB, s: DbState, newGeneration: boolean): Promise<void> {
    const started = Date.now();
    const image = await takeSnapshot(db, path.join(this.opts.mountDir, db.name));
    const body = await encodeSnapshotObject(db.name, image).finally(() => image.pages.close());
    const generation = newGeneration || !s.generation ? newGenerationId() : s.generation;
    await this.opts.objects.put(this.opts.layout.snapshotKey(db.name, generation, image.txid), body, this.abort.signal);
    this.stats.snapshots++;
    this.stats.bytes += body.length;
    if (newGeneration || s.generation !== generation) {
      Object.assign(s, { generation, txid: image.txid, checksum: image.checksum, needsGeneration: false, segments: [], compactedTo: image.txid });
    }
    s.snapshotAt = Date.now();
    s.snapshotTxid = image.txid;
    this.opts.log.info({ db: db.name, generation, txid: image.txid, bytes: body.length, ms: Date.now() - started }, newGeneration ? 'backup: new generation, snapshot uploaded' : 'backup: snapshot uploaded');
  }

  /**
   * Uploads the log from the last uploaded TXID up to the position when the
   * pass began, in objects of at most SEGMENT_OBJECT_BYTES. Commits made
   * while it uploads wait for the next pass: chasing them would turn a
   * steady stream of commits into back-to-back uploads of a few each.
   */
  private async uploadSegments(db: DB, s: DbState): Promise<void> {
    const upTo = db.position.txid;
    while (!this.abort.signal.aborted && upTo > s.txid) {
      const start = db.log.indexOf(s.txid + 1);
      const first = start >= 0 ? db.log.entry(start) : undefined;
      if (!first || db.log.readHeader(first).preApplyChecksum !== s.checksum) {
        // The log no longer holds what follows the bucket (or holds another history): start over.
        this.opts.log.warn({ db: db.name, generation: s.generation, txid: s.txid }, first ? 'backup: the log diverges from the bucket; starting a new generation' : 'backup: the log no longer covers the bucket; starting a new generation');
        await this.snapshot(db, s, true);
        continue;
      }
      const batch = db.log.contiguousFrom(start, SEGMENT_OBJECT_BYTES);
      const maxTxid = batch[batch.length - 1]!.maxTxid;
      const body = encodeLogSegmentObject(db.name, db.log.readEncoded(batch), batch);
      const key = this.opts.layout.segmentKey(db.name, s.generation!, first.minTxid, maxTxid);
      await this.opts.objects.put(key, body, this.abort.signal);
      s.segments.push({ key, minTxid: first.minTxid, maxTxid, size: body.length, lastModified: Date.now() });
      s.txid = maxTxid;
      s.checksum = body.readBigUInt64BE(OFF_POST_APPLY);
      s.lastUploadAt = Date.now();
      this.stats.uploads++;
      s.uploads++;
      this.stats.bytes += body.length;
      this.emit('uploaded', db.name, s.txid);
    }
  }

  /** Merges the small objects of completed TXID windows (compaction.ts); a failure only delays it. */
  private async compact(db: DB, s: DbState): Promise<void> {
    if (!s.generation || s.txid <= s.compactedTo) return;
    try {
      const ctx = { objects: this.opts.objects, layout: this.opts.layout, db: db.name, generation: s.generation, signal: this.abort.signal };
      const { segments, merged } = await compactWindows(ctx, s.segments, s.compactedTo, s.txid);
      s.segments = segments;
      s.compactedTo = s.txid;
      if (merged > 0) this.opts.log.debug({ db: db.name, merged }, 'backup compacted segment objects');
    } catch (err) {
      if (this.abort.signal.aborted) return;
      s.known = false; // read the bucket again before going on
      this.opts.log.warn({ db: db.name, err: (err as Error).message }, 'backup compaction failed; will retry');
    }
  }

  private async retention(): Promise<void> {
    this.lastRetention = Date.now();
    for (const db of this.opts.store.dbs.values()) {
      const s = this.state.get(db.name);
      if (!s?.generation) continue;
      try {
        const removed = await enforceBackupRetention(this.opts.objects, this.opts.layout, db.name, s.generation, this.opts.config.retention);
        if (removed > 0) this.opts.log.info({ db: db.name, removed }, 'backup retention removed old objects');
      } catch (err) {
        this.opts.log.warn({ db: db.name, err: (err as Error).message }, 'backup retention failed; will retry');
      }
    }
  }
}
