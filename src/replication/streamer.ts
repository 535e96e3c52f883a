// The primary's side of replication: one long HTTP response per replica
// (docs/protocol.md). Each subscriber reads what it sends from the
// transaction log on disk, at its own pace: a commit only wakes it, so a
// slow replica never holds up a commit and nothing piles up in memory; one
// that falls behind the log's retention gets a snapshot instead.
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { DB } from '../store/db.js';
import type { Position } from '../store/types.js';
import { formatPosition } from '../txlog/checksum.js';
import { dropRecord, heartbeatRecord, readyRecord, walSegmentRecordOfRun } from './records.js';
import { helloRecord, type HelloInfo } from './hello.js';
import { snapshotRecordParts, takeSnapshot } from './snapshot.js';
import { handoffRecord } from './handoff.js';

/** How long a replica may take no bytes of a snapshot before its stream is closed (the snapshot holds SQLite's locks). */
const SNAPSHOT_STALL_MS = 30_000;
/** Log bytes per WAL_SEGMENT record (a record holds whole transactions, at least one). */
const SEGMENT_BYTES = 1024 * 1024;

export interface StreamerOptions {
  store: Store;
  log: Logger;
  mountDir: string;
  hello: () => HelloInfo;
  heartbeatMs: number;
  compress: boolean;
}

/** The replica went away (or the node stops): the subscriber ends quietly. */
class StreamClosed extends Error {}

/** Who is asking for a stream (the POST /stream body). */
export interface ReplicaRequest {
  hostname: string;
  /** The replica's node id (16 hex digits), used by a handoff to find its stream. */
  nodeId?: string;
  positions: Map<string, Position>;
  /** Per database, DB.ownHistory() of a replica that was primary: to count what it loses. */
  history?: Map<string, Position[]>;
}

export class Streamer {
  private readonly subscribers = new Set<Subscriber>();

  constructor(private readonly opts: StreamerOptions) {
    const wake = () => {
      for (const s of this.subscribers) s.wake();
    };
    opts.store.on('commit', wake);
    opts.store.on('drop', wake);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Serves one replica until it disconnects or close() is called. */
  async serve(res: ServerResponse, replica: ReplicaRequest): Promise<void> {
    const sub = new Subscriber(res, this.opts, replica.hostname, replica.nodeId, discardedBy(this.opts.store, replica));
    this.subscribers.add(sub);
    this.opts.log.info({ replica: replica.hostname }, 'replica connected');
    try {
      await sub.run(replica.positions);
    } catch (err) {
      if (!(err instanceof StreamClosed)) {
        this.opts.log.warn({ replica: replica.hostname, err: (err as Error).message }, 'stream to replica failed');
        res.destroy();
      }
    } finally {
      this.subscribers.delete(sub);
      sub.close();
      this.opts.log.info({ replica: replica.hostname }, 'replica disconnected');
    }
  }

  /** Ends every stream (the node stops, or is no longer primary). */
  close(): void {
    for (const s of this.subscribers) s.close();
  }

  /** Waits (at most timeoutMs) until every connected replica has been sent every transaction: before a clean stop releases the lease. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ([...this.subscribers].some((s) => !s.isClosed && !s.caughtUp()) && Date.now() < deadline) {
      for (const s of this.subscribers) s.wake();
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Sends HANDOFF with `leaseId` to the replica with this node id once its
   * stream has carried every transaction this node has (the caller stopped
   * writes first). Rejects when no such replica is connected or it does not
   * catch up within `timeoutMs`.
   */
  async handoff(nodeId: string, leaseId: string, timeoutMs: number): Promise<string> {
    const sub = [...this.subscribers].find((s) => s.nodeId === nodeId);
    if (!sub) throw new Error(`no replica with node id ${nodeId} is connected`);
    const deadline = Date.now() + timeoutMs;
    while (!sub.caughtUp()) {
      if (sub.isClosed) throw new Error(`the stream to ${sub.replica} ended during the handoff`);
      if (Date.now() > deadline) throw new Error(`${sub.replica} did not catch up within ${timeoutMs} ms`);
      sub.wake();
      await new Promise((r) => setTimeout(r, 2));
    }
    await sub.send(handoffRecord({ leaseId, nodeId }));
    return sub.replica;
  }
}

class Subscriber {
  /** The TXID each database was sent up to. */
  private readonly sent = new Map<string, number>();
  private closed = false;
  private wakeUp?: () => void;
  private pendingWake = false;
  private lastWrite = Date.now();

  private ready = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly opts: StreamerOptions,
    readonly replica: string,
    readonly nodeId?: string,
    private readonly discarded?: Record<string, number>,
  ) {
    res.once('close', () => this.close());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Past the initial catch-up and sent up to every database's last transaction. */
  caughtUp(): boolean {
    if (!this.ready) return false;
    for (const db of this.opts.store.dbs.values()) if (db.txid > (this.sent.get(db.name) ?? 0)) return false;
    for (const name of this.sent.keys()) if (!this.opts.store.dbs.has(name)) return false;
    return true;
  }

  /** Writes one record now, between the run loop's own writes (JS is single-threaded: records never interleave). */
  send(record: Buffer): Promise<void> {
    return this.write(record);
  }

  wake(): void {
    this.pendingWake = true;
    this.wakeUp?.();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.wakeUp?.();
    if (!this.res.writableEnded) this.res.end();
  }

  async run(positions: Map<string, Position>): Promise<void> {
    const { store } = this.opts;
    this.res.socket?.setNoDelay(true);
    this.res.writeHead(200, { 'content-type': 'application/x-litefs-stream', 'cache-control': 'no-store' });
    if (this.discarded) {
      for (const [db, count] of Object.entries(this.discarded)) this.opts.log.warn({ db, replica: this.replica, count }, 'the replica has transactions it committed as primary that never reached this node; they are discarded');
    }
    await this.write(helloRecord({ ...this.opts.hello(), ...(this.discarded ? { discarded: this.discarded } : {}) }));
    for (const db of [...store.dbs.values()]) await this.catchUp(db, positions.get(db.name) ?? { txid: 0, checksum: 0n });
    for (const name of positions.keys()) {
      if (!store.dbs.has(name)) await this.write(dropRecord(name));
    }
    await this.write(readyRecord());
    this.ready = true;
    while (!this.closed) {
      await this.idle();
      let sentSomething = false;
      for (const db of [...store.dbs.values()]) {
        if (db.txid > (this.sent.get(db.name) ?? 0)) {
          await this.sendFrom(db, (this.sent.get(db.name) ?? 0) + 1);
          sentSomething = true;
        }
      }
      for (const name of [...this.sent.keys()]) {
        if (!store.dbs.has(name)) {
          this.sent.delete(name);
          await this.write(dropRecord(name));
          sentSomething = true;
        }
      }
      if (!sentSomething && Date.now() - this.lastWrite >= this.opts.heartbeatMs) await this.write(heartbeatRecord());
    }
    throw new StreamClosed();
  }

  /** Waits for a commit, or until a heartbeat is due. */
  private idle(): Promise<void> {
    if (this.pendingWake || this.closed) {
      this.pendingWake = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const due = Math.max(0, this.opts.heartbeatMs - (Date.now() - this.lastWrite));
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        this.pendingWake = false;
        resolve();
      };
      const timer = setTimeout(done, due);
      this.wakeUp = done;
    });
  }

  /** Brings one database from the replica's position to the primary's: segments when the log allows, else a snapshot. */
  private async catchUp(db: DB, at: Position): Promise<void> {
    const mine = db.position;
    if (mine.txid === 0) {
      // Created here and not yet committed: the replica's copy (if any) is not ours.
      if (at.txid > 0) await this.write(dropRecord(db.name));
      this.sent.set(db.name, 0);
      return;
    }
    if (at.txid === mine.txid && at.checksum === mine.checksum) {
      this.sent.set(db.name, mine.txid);
      return;
    }
    const next = at.txid > 0 && at.txid < mine.txid ? db.log.indexOf(at.txid + 1) : -1;
    if (next >= 0 && db.log.readHeader(db.log.entry(next)).preApplyChecksum === at.checksum) {
      this.sent.set(db.name, at.txid);
      await this.sendFrom(db, at.txid + 1);
      return;
    }
    const why = at.txid === 0 ? 'new replica' : at.txid > mine.txid ? 'replica is ahead' : next < 0 ? 'log no longer covers the replica' : 'checksum differs';
    await this.sendSnapshot(db, why, at);
  }

  private async sendSnapshot(db: DB, why: string, at: Position): Promise<void> {
    const started = Date.now();
    // Reading a large database takes seconds: heartbeats keep the replica from taking the silence for a dead primary.
    const keepAlive = setInterval(() => {
      if (!this.closed && this.res.writableLength === 0) {
        this.lastWrite = Date.now();
        this.res.write(heartbeatRecord());
      }
    }, this.opts.heartbeatMs);
    let image;
    try {
      image = await takeSnapshot(db, path.join(this.opts.mountDir, db.name));
    } finally {
      clearInterval(keepAlive);
    }
    try {
      // Each record's pages go out from the buffer they were read into, so it must be on the socket before the next read.
      for await (const parts of snapshotRecordParts(db.name, image, this.opts.compress)) await this.writeFlushed(parts, SNAPSHOT_STALL_MS);
    } finally {
      await image.pages.close(); // lets go of SQLite's locks on the primary's database
    }
    this.sent.set(db.name, image.txid);
    this.opts.log.info(
      { db: db.name, replica: this.replica, reason: why, replicaPosition: formatPosition(at.txid, at.checksum), txid: image.txid, bytes: image.commitSize * image.pageSize, via: image.via, named: image.unverified ? 'position' : 'checksum', ms: Date.now() - started },
      'sent a snapshot',
    );
  }

  /** Sends the log from `txid` to the newest transaction, in WAL_SEGMENT records. */
  private async sendFrom(db: DB, txid: number): Promise<void> {
    while (!this.closed && db.txid >= txid) {
      const start = db.log.indexOf(txid);
      if (start < 0) {
        await this.sendSnapshot(db, 'log no longer covers the replica', { txid: txid - 1, checksum: 0n });
        return;
      }
      const batch = db.log.contiguousFrom(start, SEGMENT_BYTES);
      await this.write(walSegmentRecordOfRun(db.name, db.log.readEncoded(batch), batch));
      txid = batch[batch.length - 1]!.maxTxid + 1;
      this.sent.set(db.name, txid - 1);
    }
  }

  /**
   * Sends one record, waiting while the replica's socket is full. With
   * `stallMs`, a replica that takes no bytes for that long is cut off (a
   * snapshot holds SQLite's locks on the primary's database while it goes out).
   */
  private async write(record: Buffer, stallMs?: number): Promise<void> {
    if (this.closed) throw new StreamClosed();
    this.lastWrite = Date.now();
    if (this.res.write(record)) return;
    await this.whileStalled(stallMs, (done) => this.res.on('drain', done), (done) => this.res.off('drain', done));
  }

  /** Sends a record given in parts and waits until the socket has taken all of it: the caller reuses their memory next. */
  private async writeFlushed(parts: readonly Buffer[], stallMs?: number): Promise<void> {
    if (this.closed) throw new StreamClosed();
    this.lastWrite = Date.now();
    let flushed = false;
    let onFlushed: (() => void) | undefined;
    this.res.cork();
    parts.forEach((part, i) => this.res.write(part, i < parts.length - 1 ? undefined : () => { flushed = true; onFlushed?.(); }));
    this.res.uncork();
    if (flushed) return;
    await this.whileStalled(stallMs, (done) => (onFlushed = done), () => (onFlushed = undefined));
  }

  /** Waits until `listen`'s callback runs or the stream closes; with `stallMs`, cuts the replica off when neither happens in time. */
  private async whileStalled(stallMs: number | undefined, listen: (done: () => void) => void, unlisten: (done: () => void) => void): Promise<void> {
    await new Promise<void>((resolve) => {
      const stall = stallMs === undefined ? undefined : setTimeout(() => {
        this.opts.log.warn({ replica: this.replica, ms: stallMs }, 'the replica took no snapshot bytes for too long; closing its stream');
        this.res.destroy();
      }, stallMs);
      const done = () => {
        clearTimeout(stall);
        unlisten(done);
        this.res.off('close', done);
        resolve();
      };
      listen(done);
      this.res.on('close', done);
    });
    if (this.closed || this.res.destroyed) throw new StreamClosed();
  }
}

/**
 * Per database, how many of the transactions a returning old primary
 * committed are not in this node's history: the replica's position minus
 * the newest point both histories share.
 */
function discardedBy(store: Store, replica: ReplicaRequest): Record<string, number> | undefined {
  let out: Record<string, number> | undefined;
  for (const [name, history] of replica.history ?? []) {
    const at = replica.positions.get(name);
    const db = store.dbs.get(name);
    if (!at || history.length === 0) continue;
    const points = [...history, at];
    let common = history[0]!.txid;
    for (let i = points.length - 1; i >= 0; i--) {
      const p = points[i]!;
      if (db && db.checksumAt(p.txid) === p.checksum) {
        common = p.txid;
        break;
      }
    }
    if (at.txid > common) (out ??= {})[name] = at.txid - common;
  }
  return out;
}
