// A node's life under a lease: a replica follows whoever the lease names;
// a candidate takes the lease when nobody holds it and becomes primary; a
// primary renews, and stops accepting writes the moment the lease is lost,
// or before it could expire when renewals keep failing. Also the handoff
// (POST /promote on a replica → POST /handoff on the primary → HANDOFF on
// the replica's stream) and the cluster id check.
import { EventEmitter } from 'node:events';
import { request } from 'undici';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { Follower } from '../replication/follower.js';
import type { Streamer } from '../replication/streamer.js';
import type { HandoffInfo } from '../replication/handoff.js';
import { abortableSleep, LeaseBackendError, LeaseHeldError, LeaseLostError, MalformedLeaseValueError, type Lease, type Leaser, type PrimaryInfo } from './lease.js';
import type { ClusterIdFile } from './cluster-id.js';

export interface LifecycleOptions {
  leaser: Leaser;
  store: Store;
  streamer: Streamer;
  log: Logger;
  /** This node, as the lease key names a primary. */
  self: PrimaryInfo;
  candidate: boolean;
  /** lease.promote: ask for the lease once caught up with a primary. */
  promoteWhenReady: boolean;
  reconnectDelay: number;
  demoteDelay: number;
  clusterIds: ClusterIdFile;
  newFollower(primaryUrl: string): Follower;
}

/** An error with the HTTP status the API should answer with. */
export class LifecycleError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

const HANDOFF_CATCH_UP_MS = 800;
const LOOK_AGAIN_MS = 30_000;

export class NodeLifecycle extends EventEmitter {
  private lease?: Lease;
  private follower?: Follower;
  private stopped = false;
  private waker = new AbortController();
  private noAcquireUntil = 0;
  private running?: Promise<void>;
  private deadlineTimer?: NodeJS.Timeout;
  private problem?: string;
  private failures = 0;
  private clusterChecked = false;
  private pendingHandoff?: HandoffInfo;
  private settling: Promise<void> = Promise.resolve();
  private announced = false;
  private handedOffAt = 0;
  /** Counts, for /metrics and tests. */
  readonly stats = { promotions: 0, demotions: 0, handoffs: 0, discarded: 0 };

  private markReady!: () => void;
  /** Resolves once this node is primary or has caught up with one: when exec'd apps start. */
  readonly ready = new Promise<void>((resolve) => (this.markReady = resolve));

  constructor(private readonly opts: LifecycleOptions) {
    super();
  }

  get isPrimary(): boolean {
    return this.lease !== undefined;
  }

  /** The primary's hostname: this node's, or the one the follower is connected to. */
  get primaryHostname(): string | undefined {
    return this.lease ? this.opts.self.hostname : this.follower?.primary;
  }

  get currentFollower(): Follower | undefined {
    return this.follower;
  }

  start(): void {
    this.running = this.loop();
  }

  /** Clean stop: a primary refuses writes, then releases the lease so a candidate takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.poke();
    clearTimeout(this.deadlineTimer);
    const lease = this.lease;
    this.lease = undefined;
    if (lease) {
      await this.opts.store.stopWrites();
      // Replicas get what was committed before the lease goes: a clean stop loses nothing they can still take.
      await this.opts.streamer.drain(1000);
      this.opts.streamer.close();
      await lease.release();
      this.opts.log.info('released the lease');
    }
    await this.stopFollower();
    await this.running;
    await this.opts.leaser.close().catch(() => undefined);
  }

  /** Wakes the loop from whatever it waits on. */
  private poke(): void {
    this.waker.abort();
  }

  private signal(): AbortSignal {
    if (this.waker.signal.aborted) this.waker = new AbortController();
    return this.waker.signal;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const signal = this.signal();
      try {
        if (this.pendingHandoff) await this.takeHandoff(this.pendingHandoff);
        else if (this.lease) await this.holdPrimary(this.lease, signal);
        else await this.replicaStep(signal);
      } catch (err) {
        if (err instanceof ClusterMismatchError) {
          this.opts.log.fatal(err.message);
          this.emit('fatal', err);
          return;
        }
        this.opts.log.error({ err: (err as Error).message }, 'lease loop error');
        await sleep(1000, signal);
      }
    }
  }

  // ---- replica -------------------------------------------------------------

  private async replicaStep(signal: AbortSignal): Promise<void> {
    const { leaser } = this.opts;
    let info: PrimaryInfo | undefined;
    try {
      await this.checkClusterId();
      info = await leaser.primaryInfo();
      this.backendOk();
    } catch (err) {
      if (err instanceof ClusterMismatchError) throw err;
      if (err instanceof MalformedLeaseValueError) {
        this.report(err.message);
        await leaser.waitForChange(5000, signal);
        return;
      }
      await this.backendFailed(err, signal);
      return;
    }
    if (info && info.advertiseUrl !== this.opts.self.advertiseUrl) {
      await this.follow(info);
      await leaser.waitForChange(LOOK_AGAIN_MS, signal);
      return;
    }
    if (info) {
      // Just handed off: the new primary rewrites the key in a moment.
      if (Date.now() - this.handedOffAt < 5000) {
        await leaser.waitForChange(250, signal);
        return;
      }
      // Our own key from an earlier run of this node (killed): it expires by itself.
      this.report('the lease still names this node from an earlier run; waiting for it to expire');
      await leaser.waitForChange(1000, signal);
      return;
    }
    if (!this.opts.candidate) {
      await leaser.waitForChange(LOOK_AGAIN_MS, signal);
      return;
    }
    const wait = this.noAcquireUntil - Date.now();
    if (wait > 0) {
      await sleep(wait, signal);
      return;
    }
    let lease: Lease;
    try {
      lease = await leaser.acquire();
    } catch (err) {
      if (err instanceof LeaseHeldError) {
        this.opts.log.debug({ reason: err.message }, 'lease not acquired');
        await leaser.waitForChange(250, signal);
        return;
      }
      await this.backendFailed(err, signal);
      return;
    }
    await this.becomePrimary(lease);
  }

  private async follow(info: PrimaryInfo): Promise<void> {
    if (this.follower?.primaryUrl === info.advertiseUrl) return;
    await this.stopFollower();
    await this.settling;
    if (this.stopped || this.lease) return;
    const follower = this.opts.newFollower(info.advertiseUrl);
    follower.on('handoff', (h: HandoffInfo) => {
      this.pendingHandoff = h;
      this.poke();
    });
    follower.on('ready', () => {
      this.markReady();
      if (this.opts.promoteWhenReady && this.opts.candidate && this.follower === follower) {
        this.promote().catch((err: Error) => this.opts.log.warn({ err: err.message }, 'lease.promote: could not take over from the primary'));
      }
    });
    follower.on('discarded', (n: number) => (this.stats.discarded += n));
    this.follower = follower;
    if (!this.announced) this.emit('role', 'replica');
    this.announced = true;
    this.opts.log.info({ primary: info.hostname, url: info.advertiseUrl }, 'following the primary');
    follower.start();
  }

  private async stopFollower(): Promise<void> {
    const f = this.follower;
    this.follower = undefined;
    await f?.stop();
  }

  // ---- primary -------------------------------------------------------------

  private async becomePrimary(lease: Lease): Promise<void> {
    await this.stopFollower();
    try {
      await this.recordClusterId();
    } catch (err) {
      await lease.release();
      throw err;
    }
    this.opts.store.setRole('primary');
    this.lease = lease;
    this.stats.promotions++;
    this.armDeadline(lease);
    this.problem = undefined;
    this.opts.log.info({ lease: this.opts.leaser.type, id: lease.id }, 'this node is now the primary');
    this.emit('role', 'primary');
    this.markReady();
  }

  private async holdPrimary(lease: Lease, signal: AbortSignal): Promise<void> {
    if (!Number.isFinite(lease.ttl)) {
      await sleep(LOOK_AGAIN_MS, signal); // static: nothing to renew
      return;
    }
    const due = lease.renewedAt + lease.ttl / 2 - Date.now();
    if (due > 0 && this.failures === 0) {
      await sleep(due, signal);
      return;
    }
    try {
      await lease.renew();
      if (this.lease !== lease) return;
      this.armDeadline(lease);
      this.backendOk();
    } catch (err) {
      if (this.lease !== lease) return;
      if (err instanceof LeaseLostError) {
        this.demote(`the lease was lost: ${err.message}`);
        return;
      }
      this.failures++;
      this.report(`cannot renew the lease: ${(err as Error).message}`);
      await sleep(Math.max(100, lease.ttl / 10), signal);
    }
  }

  /** Writes stop before the lease could expire, whatever the renewals do. */
  private armDeadline(lease: Lease): void {
    clearTimeout(this.deadlineTimer);
    if (!Number.isFinite(lease.ttl)) return; // static: never expires
    const margin = Math.min(lease.ttl / 8, 2000);
    const ms = lease.renewedAt + lease.ttl - margin - Date.now();
    this.deadlineTimer = setTimeout(() => {
      if (this.lease === lease) this.demote('the lease could not be renewed before it could expire');
    }, Math.max(0, ms));
  }

  /** Stops accepting writes at once; the loop then follows whoever the lease names next. */
  private demote(reason: string): void {
    const lease = this.lease;
    if (!lease) return;
    this.lease = undefined;
    clearTimeout(this.deadlineTimer);
    this.opts.store.setRole('replica');
    this.opts.streamer.close();
    lease.abandon();
    this.stats.demotions++;
    this.noAcquireUntil = Date.now() + this.opts.demoteDelay;
    this.opts.log.warn({ reason }, 'this node is no longer the primary; writes are refused');
    this.settling = this.settleAll();
    this.emit('role', 'replica');
    this.poke();
  }

  /** Rolls back transactions the switch to read-only cut off (DB.settle). */
  private async settleAll(): Promise<void> {
    for (const db of [...this.opts.store.dbs.values()]) {
      await db.settle().catch((err: Error) => this.opts.log.error({ db: db.name, err: err.message }, 'could not settle the database after demotion'));
    }
  }

  // ---- handoff -------------------------------------------------------------

  /** On the primary (POST /handoff): passes the lease to the connected replica with this node id. */
  async handoff(nodeId: string): Promise<string> {
    const lease = this.lease;
    if (!lease) throw new LifecycleError(`this node is not the primary; the primary is ${this.primaryHostname ?? 'unknown'}`, 409);
    if (!Number.isFinite(lease.ttl)) throw new LifecycleError('a static lease cannot be handed off: change the config of both nodes instead', 400);
    await this.opts.store.stopWrites(); // no new writes while the replica catches up
    if (this.lease !== lease) throw new LifecycleError('the lease was lost while stopping writes for the handoff', 409);
    let to: string;
    try {
      to = await this.opts.streamer.handoff(nodeId, lease.id, HANDOFF_CATCH_UP_MS);
    } catch (err) {
      if (this.lease === lease) this.opts.store.setRole('primary');
      throw new LifecycleError(`handoff failed: ${(err as Error).message}`, 409);
    }
    this.lease = undefined;
    clearTimeout(this.deadlineTimer);
    lease.abandon();
    this.stats.handoffs++;
    this.handedOffAt = Date.now();
    this.opts.streamer.close();
    this.opts.log.info({ to }, 'handed the lease over');
    this.emit('role', 'replica');
    this.poke();
    return to;
  }

  /** On a replica that got HANDOFF: takes the same lease and becomes primary. */
  private async takeHandoff(h: HandoffInfo): Promise<void> {
    this.pendingHandoff = undefined;
    await this.stopFollower();
    try {
      const lease = await this.opts.leaser.acquireExisting(h.leaseId);
      await this.becomePrimary(lease);
    } catch (err) {
      if (err instanceof ClusterMismatchError) throw err;
      this.opts.log.warn({ err: (err as Error).message }, 'could not take over the lease handed to this node');
    }
  }

  /** On a replica (POST /promote, lease.promote, litefs run -promote): asks the primary for the lease. */
  async promote(timeoutMs = 5000): Promise<void> {
    if (this.lease) return;
    if (!this.opts.candidate) throw new LifecycleError('this node is not a candidate (lease.candidate is false)', 400);
    const f = this.follower;
    if (!f?.primary) throw new LifecycleError('this node is not connected to a primary', 409);
    const res = await request(new URL('/handoff', f.primaryUrl), {
      method: 'POST',
      body: JSON.stringify({ nodeId: this.opts.store.nodeIdHex }),
      headers: { 'content-type': 'application/json' },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON
      }
      throw new LifecycleError(`the primary refused the handoff: ${message}`, 409);
    }
    await this.waitForPrimary(timeoutMs);
  }

  private waitForPrimary(timeoutMs: number): Promise<void> {
    if (this.lease) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('role', onRole);
        reject(new LifecycleError(`the handoff did not complete within ${timeoutMs} ms`, 504));
      }, timeoutMs);
      const onRole = (role: string) => {
        if (role !== 'primary') return;
        clearTimeout(timer);
        this.off('role', onRole);
        resolve();
      };
      this.on('role', onRole);
    });
  }

  // ---- cluster id ----------------------------------------------------------

  /** A node whose data came from another cluster must not join this one. */
  private async checkClusterId(): Promise<void> {
    if (this.clusterChecked) return;
    const remote = await this.opts.leaser.clusterId();
    const local = this.opts.clusterIds.read();
    if (remote && local && remote !== local) throw new ClusterMismatchError(local, remote, this.opts.leaser.describe);
    if (remote && !local) this.opts.clusterIds.write(remote);
    this.clusterChecked = true;
  }

  private async recordClusterId(): Promise<void> {
    const local = this.opts.clusterIds.read();
    const stored = await this.opts.leaser.setClusterId(local ?? this.opts.clusterIds.generate());
    if (local && stored !== local) throw new ClusterMismatchError(local, stored, this.opts.leaser.describe);
    if (!local) this.opts.clusterIds.write(stored);
  }

  // ---- backend trouble -----------------------------------------------------

  private backendOk(): void {
    if (this.problem) this.opts.log.info({ backend: this.opts.leaser.describe }, 'lease backend reachable again');
    this.problem = undefined;
    this.failures = 0;
  }

  /** Logs a problem once (until it changes or goes away). */
  private report(message: string): void {
    if (message === this.problem) return;
    this.problem = message;
    this.opts.log.error({ backend: this.opts.leaser.describe }, message);
  }

  private async backendFailed(err: unknown, signal: AbortSignal): Promise<void> {
    this.failures++;
    this.report((err as Error).message);
    const permanent = err instanceof LeaseBackendError && err.permanent;
    const backoff = permanent ? 30_000 : Math.min(10_000, this.opts.reconnectDelay * 2 ** Math.min(this.failures - 1, 4));
    await sleep(backoff, signal);
  }
}

export class ClusterMismatchError extends Error {
  constructor(local: string, remote: string, where: string) {
    super(`this node belongs to cluster ${local}, but ${where} is used by cluster ${remote}: refusing to join (point lease.*.key at this cluster's key, or empty data.dir to join as a new node)`);
  }
}

const sleep = abortableSleep;
