// The primary lease, behind a small interface: one implementation per
// backend (static.ts, consul.ts, etcd.ts). The node's lifecycle
// (src/lease/lifecycle.ts) decides what to do with it; implementations only
// talk to their backend and report what it says.
import type { Logger } from '../log.js';

/** What the lease key holds: who the primary is and where its API is. */
export interface PrimaryInfo {
  hostname: string;
  advertiseUrl: string;
}

/** The backend says this lease is gone (expired, deleted, or held by another). Stop writing at once. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** Another node holds the lease, or lock-delay still keeps it from being taken. */
export class LeaseHeldError extends Error {
  override name = 'LeaseHeldError';
  constructor(
    message: string,
    readonly primary?: PrimaryInfo,
  ) {
    super(message);
  }
}

/**
 * The backend could not be reached or refused the request for a reason that
 * is not about the lease (bad URL, bad token, bad TTL): the message names
 * the backend, the URL and what it answered.
 */
export class LeaseBackendError extends Error {
  override name = 'LeaseBackendError';
  /** True when retrying cannot help (bad token, TTL the backend refuses): log once, keep retrying slowly. */
  readonly permanent: boolean;
  constructor(message: string, permanent = false) {
    super(message);
    this.permanent = permanent;
  }
}

/** What every backend's leaser is built from (consul.ts, etcd.ts add where the backend is). */
export interface LeaserOptions {
  /** The lease key. */
  key: string;
  /** TTL (ms). Consul: session TTL, 10s..24h; etcd: lease TTL, whole seconds. */
  ttl: number;
  /** Lock-delay (ms): Consul's session LockDelay (at most 60 s); on etcd our client enforces it after an expiry. */
  lockDelay: number;
  hostname: string;
  advertiseUrl: string;
  log?: Logger;
}

/** Waits `ms`, or less when `signal` aborts. Never rejects. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}

/** The lease key's value was not what a litefs node writes. */
export class MalformedLeaseValueError extends Error {
  override name = 'MalformedLeaseValueError';
}

/** One hold of the primary lease. */
export interface Lease {
  /** The backend's id for this hold: Consul session id, etcd lease id (decimal), "static". Handed to a replica on handoff. */
  readonly id: string;
  /** How long one renewal keeps the lease at least (ms): the backend's TTL. */
  readonly ttl: number;
  /**
   * Local time (Date.now()) at which the last successful renewal (or the
   * acquisition) was *sent*: nobody else can hold the lease before
   * renewedAt + ttl. The lifecycle stops writes before that moment when
   * renewals keep failing.
   */
  readonly renewedAt: number;
  /** Renews now. LeaseLostError: it is gone. LeaseBackendError: could not ask. */
  renew(): Promise<void>;
  /**
   * Gives the lease up so a candidate can take it at once (clean shutdown):
   * Consul releases the key then destroys the session; etcd revokes.
   * Best effort: errors are swallowed (the TTL ends it anyway).
   */
  release(): Promise<void>;
  /** Stops renewing without releasing: the lease was handed to another node that renews it now. */
  abandon(): void;
}

export interface Leaser {
  readonly type: 'static' | 'consul' | 'etcd';
  /** Where the backend is, for log lines (no secrets). */
  readonly describe: string;
  /**
   * Takes the lease with this node's PrimaryInfo as the key's value.
   * LeaseHeldError when another holds it or lock-delay is in force.
   */
  acquire(): Promise<Lease>;
  /**
   * Takes over a lease the primary handed to this node (handoff): the same
   * Consul session / etcd lease id, with this node's PrimaryInfo written
   * as the key's value. LeaseLostError when that lease is gone.
   */
  acquireExisting(id: string): Promise<Lease>;
  /** Who holds the lease now (undefined: nobody). MalformedLeaseValueError for a value no litefs wrote. */
  primaryInfo(): Promise<PrimaryInfo | undefined>;
  /**
   * Resolves when the lease key may have changed since the last
   * primaryInfo() or waitForChange(), or after timeoutMs, or on abort
   * (Consul: blocking query; etcd: watch). Never rejects.
   */
  waitForChange(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  /** The cluster id recorded in the lease store, if any. */
  clusterId(): Promise<string | undefined>;
  /**
   * Records the cluster id if none is recorded yet (create-only); returns
   * the id that is recorded afterwards (another node's, if it won the race).
   */
  setClusterId(id: string): Promise<string>;
  close(): Promise<void>;
}

/** Parses a lease key's value: JSON {"hostname": ..., "advertise-url": ...}, as LiteFS writes it. */
export function parsePrimaryInfo(raw: string, where: string): PrimaryInfo {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new MalformedLeaseValueError(`${where} holds ${JSON.stringify(raw.slice(0, 80))}, not the JSON {"hostname", "advertise-url"} a litefs primary writes`);
  }
  const o = v as Record<string, unknown> | null;
  const hostname = o && typeof o === 'object' ? o['hostname'] : undefined;
  const advertiseUrl = o && typeof o === 'object' ? o['advertise-url'] : undefined;
  if (typeof hostname !== 'string' || typeof advertiseUrl !== 'string' || !/^https?:\/\//.test(advertiseUrl)) {
    throw new MalformedLeaseValueError(`${where} holds ${JSON.stringify(raw.slice(0, 80))}: expected {"hostname": string, "advertise-url": "http(s)://..."}`);
  }
  return { hostname, advertiseUrl };
}

export function formatPrimaryInfo(info: PrimaryInfo): string {
  return JSON.stringify({ hostname: info.hostname, 'advertise-url': info.advertiseUrl });
}
