// The primary lease on etcd v3: a lease (grant / keepalive / revoke) plus a
// key written only if absent, bound to that lease, so the key disappears
// when the lease expires. Spoken through etcd's JSON gateway (etcd-client.ts).
//
// etcd has no lock-delay, so it is kept here, client-side: once this leaser
// sees the key freed by an *expired* lease, acquire() refuses until
// lockDelay has passed (the old primary may not know yet that it lost).
// A clean release is told apart by a marker: release() deletes the key and
// puts `<key>/released` in one txn, so both carry the same revision.
import { b64, EtcdClient, EtcdError, unb64, type KeyValue, type TxnResponse } from './etcd-client.js';
import {
  formatPrimaryInfo, LeaseBackendError, LeaseHeldError, LeaseLostError, parsePrimaryInfo, type Lease, type Leaser, type LeaserOptions, type PrimaryInfo,
} from './lease.js';

export interface EtcdLeaserOptions extends LeaserOptions {
  endpoints: string[];
}

interface WatchEvent {
  type?: 'PUT' | 'DELETE';
  kv?: KeyValue;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });

const range = (key: string) => ({ request_range: { key } });

export class EtcdLeaser implements Leaser {
  readonly type = 'etcd' as const;
  readonly describe: string;
  private readonly client: EtcdClient;
  private readonly key: string;
  private readonly markerKey: string;
  private readonly clusterKey: string;
  private readonly value: string;
  private readonly ttlSeconds: number;
  /** The key as last seen here, when it was there: a later absence is a deletion to classify. */
  private present: { modRevision: number } | undefined;
  /** Date.now() when this leaser saw the key freed by an expired lease. */
  private expiredAt: number | undefined;
  /** Highest store revision seen: watches start after it. */
  private revision = 0;
  private readonly watches = new Set<AbortController>();
  private closed = false;

  constructor(private readonly opts: EtcdLeaserOptions) {
    // Short enough that a hung etcd cannot hold a renewal past TTL/2.
    this.client = new EtcdClient(opts.endpoints, Math.max(200, Math.min(2000, Math.floor(opts.ttl / 3))));
    this.key = b64(opts.key);
    this.markerKey = b64(`${opts.key}/released`);
    this.clusterKey = b64(`${opts.key}/cluster-id`);
    this.value = b64(formatPrimaryInfo({ hostname: opts.hostname, advertiseUrl: opts.advertiseUrl }));
    this.ttlSeconds = Math.max(1, Math.ceil(opts.ttl / 1000));
    this.describe = `etcd ${this.client.endpoints.join(',')} key ${JSON.stringify(opts.key)}`;
  }

  async acquire(): Promise<Lease> {
    // Look first: it notices a deletion since the last look (lock-delay) and spares a grant when the key is held.
    const holder = await this.look();
    if (holder) throw this.held(holder);
    if (this.expiredAt !== undefined) {
      const left = this.expiredAt + this.opts.lockDelay - Date.now();
      if (left > 0) {
        throw new LeaseHeldError(`lock-delay: etcd key "${this.opts.key}" was freed by an expired lease ${Date.now() - this.expiredAt} ms ago; it may be taken in ${left} ms`);
      }
    }
    const sentAt = Date.now();
    const grant = await this.client.call<{ ID?: string; TTL?: string }>('/v3/lease/grant', { TTL: String(this.ttlSeconds) });
    const id = grant.ID;
    const granted = Number(grant.TTL ?? 0);
    if (!id || !(granted > 0)) throw new LeaseBackendError(`etcd at ${this.client.endpoint}: lease grant answered no lease (${JSON.stringify(grant).slice(0, 120)})`);
    if (granted > this.ttlSeconds) {
      await this.revoke(id);
      throw new LeaseBackendError(
        `lease.etcd.ttl is ${this.opts.ttl} ms but etcd at ${this.client.endpoint} grants at least ${granted}s (asked ${this.ttlSeconds}s): set lease.etcd.ttl to ${granted}s or more`,
        true,
      );
    }
    let r: TxnResponse;
    try {
      r = await this.txn({
        compare: [{ target: 'CREATE', key: this.key, create_revision: '0' }],
        success: [{ request_put: { key: this.key, value: this.value, lease: id } }],
        failure: [range(this.key)],
      });
    } catch (err) {
      void this.revoke(id);
      throw err;
    }
    if (!r.succeeded) {
      await this.revoke(id);
      const kv = r.responses?.[0]?.response_range?.kvs?.[0];
      if (kv) this.present = { modRevision: Number(kv.mod_revision) };
      throw kv ? this.held(kv) : new LeaseHeldError(`etcd key "${this.opts.key}" was taken meanwhile`);
    }
    this.present = { modRevision: Number(r.header?.revision) };
    return this.lease(id, granted * 1000, sentAt);
  }

  async acquireExisting(id: string): Promise<Lease> {
    if (!/^[1-9][0-9]*$/.test(id)) throw new LeaseLostError(`${JSON.stringify(id)} is not an etcd lease id`);
    const r = await this.txn({
      compare: [{ target: 'LEASE', key: this.key, lease: id }],
      success: [{ request_put: { key: this.key, value: this.value, lease: id } }],
      failure: [range(this.key)],
    });
    if (!r.succeeded) {
      const kv = r.responses?.[0]?.response_range?.kvs?.[0];
      throw new LeaseLostError(`etcd key "${this.opts.key}" is not held by lease ${id} any more (${kv ? `lease ${kv.lease ?? 0}` : 'absent'})`);
    }
    this.present = { modRevision: Number(r.header?.revision) };
    const sentAt = Date.now();
    const ttl = await this.keepAlive(id);
    return this.lease(id, ttl * 1000, sentAt);
  }

  async primaryInfo(): Promise<PrimaryInfo | undefined> {
    const kv = await this.look();
    return kv ? parsePrimaryInfo(unb64(kv.value), `etcd key "${this.opts.key}"`) : undefined;
  }

  async waitForChange(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted) return;
    const ac = new AbortController();
    const abort = () => ac.abort();
    const timer = setTimeout(abort, timeoutMs);
    signal?.addEventListener('abort', abort, { once: true });
    this.watches.add(ac);
    try {
      const events = await this.watchOnce(ac.signal);
      await this.noteEvents(events);
    } catch (err) {
      // Never reject: let the caller look again after a pause (bounded by the timeout).
      if (!ac.signal.aborted) {
        this.opts.log?.debug({ err: (err as Error).message }, 'etcd watch failed');
        await sleep(500, ac.signal);
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
      this.watches.delete(ac);
    }
  }

  async clusterId(): Promise<string | undefined> {
    const r = await this.client.call<{ kvs?: KeyValue[] }>('/v3/kv/range', { key: this.clusterKey });
    const kv = r.kvs?.[0];
    return kv ? unb64(kv.value) : undefined;
  }

  async setClusterId(id: string): Promise<string> {
    const r = await this.txn({
      compare: [{ target: 'CREATE', key: this.clusterKey, create_revision: '0' }],
      success: [{ request_put: { key: this.clusterKey, value: b64(id) } }],
      failure: [range(this.clusterKey)],
    });
    return r.succeeded ? id : unb64(r.responses?.[0]?.response_range?.kvs?.[0]?.value);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const ac of this.watches) ac.abort();
    await this.client.close();
  }

  // ---- the lease ----------------------------------------------------------

  private lease(id: string, ttl: number, renewedAt: number): Lease {
    let done = false;
    const lease = {
      id,
      ttl,
      renewedAt,
      renew: async (): Promise<void> => {
        if (done) throw new LeaseLostError(`etcd lease ${id} was released or handed off`);
        const sentAt = Date.now();
        // The keepalive keeps the lease; the range shows the key still names it (not deleted by hand).
        const [ka, holder] = await Promise.allSettled([this.keepAlive(id), this.client.call<{ kvs?: KeyValue[] }>('/v3/kv/range', { key: this.key, keys_only: true })]);
        // "Lost" from either answer wins over a failed request: the lifecycle must stop writing at once.
        if (ka.status === 'rejected' && ka.reason instanceof LeaseLostError) throw ka.reason;
        if (holder.status === 'fulfilled') {
          const kv = holder.value.kvs?.[0];
          if (kv?.lease !== id) throw new LeaseLostError(`etcd key "${this.opts.key}" ${kv ? `is now held by lease ${kv.lease ?? 0}` : 'was deleted'}, not by lease ${id}`);
        }
        if (ka.status === 'rejected') throw ka.reason;
        if (holder.status === 'rejected') throw holder.reason;
        lease.ttl = ka.value * 1000;
        lease.renewedAt = sentAt;
      },
      release: async (): Promise<void> => {
        if (done) return;
        done = true;
        const t = Math.min(1000, this.client.timeoutMs);
        try {
          // Guarded: never delete a key a successor wrote. The marker makes this deletion a clean one.
          const r = await this.txn(
            {
              compare: [{ target: 'LEASE', key: this.key, lease: id }],
              success: [{ request_delete_range: { key: this.key } }, { request_put: { key: this.markerKey, value: this.value } }],
            },
            t,
          );
          if (r.succeeded) this.present = undefined;
        } catch {
          // best effort: the revoke below or the TTL ends it
        }
        await this.revoke(id, t);
      },
      abandon: (): void => {
        done = true;
      },
    };
    return lease;
  }

  /** One keepalive: the lease's TTL (s), or LeaseLostError when etcd no longer has it. */
  private async keepAlive(id: string): Promise<number> {
    let res: { TTL?: string };
    try {
      res = await this.client.first<{ TTL?: string }>('/v3/lease/keepalive', { ID: id });
    } catch (err) {
      if (err instanceof EtcdError && /lease not found/.test(err.etcdMessage)) throw new LeaseLostError(`etcd lease ${id} is gone: ${err.etcdMessage}`);
      throw err;
    }
    const ttl = Number(res.TTL ?? 0);
    if (!(ttl > 0)) throw new LeaseLostError(`etcd lease ${id} expired or was revoked (keepalive answered TTL ${res.TTL ?? 0})`);
    return ttl;
  }

  private async revoke(id: string, timeoutMs?: number): Promise<void> {
    await this.client.call('/v3/lease/revoke', { ID: id }, timeoutMs).catch(() => undefined);
  }

  // ---- observing the key --------------------------------------------------

  private async txn(body: unknown, timeoutMs?: number): Promise<TxnResponse> {
    const r = await this.client.call<TxnResponse>('/v3/kv/txn', body, timeoutMs);
    this.noteRevision(r.header?.revision);
    return r;
  }

  private noteRevision(rev: string | undefined): void {
    const n = Number(rev ?? 0);
    if (n > this.revision) this.revision = n;
  }

  /** Reads the key and the release marker at one revision; classifies a deletion since the last look. */
  private async look(): Promise<KeyValue | undefined> {
    const r = await this.txn({ success: [range(this.key), range(this.markerKey)] });
    const kv = r.responses?.[0]?.response_range?.kvs?.[0];
    const marker = r.responses?.[1]?.response_range?.kvs?.[0];
    if (kv) {
      this.present = { modRevision: Number(kv.mod_revision) };
    } else if (this.present) {
      // Only a release txn writes the marker, and it deletes the key in the same revision:
      // a marker newer than the put we saw means the key was released, not expired.
      if (!(Number(marker?.mod_revision ?? 0) > this.present.modRevision)) this.sawExpiry();
      this.present = undefined;
    }
    return kv;
  }

  private sawExpiry(): void {
    this.expiredAt = Date.now();
    this.opts.log?.info({ key: this.opts.key, lockDelay: this.opts.lockDelay }, 'etcd lease key freed by an expired lease: lock-delay in force');
  }

  private held(kv: KeyValue): LeaseHeldError {
    let info: PrimaryInfo | undefined;
    let who: string;
    try {
      info = parsePrimaryInfo(unb64(kv.value), `etcd key "${this.opts.key}"`);
      who = `${info.hostname} (${info.advertiseUrl})`;
    } catch (err) {
      who = `a value no litefs wrote: ${(err as Error).message}`;
    }
    return new LeaseHeldError(`etcd key "${this.opts.key}" is held by ${who}, lease ${kv.lease ?? 0}`, info);
  }

  /** Watches the key from after the last revision seen; returns the first batch of events (none: look again). */
  private async watchOnce(signal: AbortSignal): Promise<WatchEvent[]> {
    const create: Record<string, string> = { key: this.key };
    if (this.revision > 0) create['start_revision'] = String(this.revision + 1);
    const s = await this.client.stream('/v3/watch', { create_request: create }, signal);
    try {
      for await (const res of s.messages) {
        const events = res['events'] as WatchEvent[] | undefined;
        if (events?.length) return events;
        if (res['canceled']) {
          // Compacted past our revision: start later next time; the caller looks again anyway.
          const compact = Number(res['compact_revision'] ?? 0);
          if (compact > 0) this.revision = Math.max(this.revision, compact - 1);
          if (compact > 0) return [];
          throw new EtcdError(`etcd at ${s.endpoint}: watch canceled: ${String(res['cancel_reason'] ?? '')}`);
        }
      }
      throw new EtcdError(`etcd at ${s.endpoint}: watch ended`);
    } finally {
      s.close();
    }
  }

  private async noteEvents(events: WatchEvent[]): Promise<void> {
    const last = events[events.length - 1];
    if (!last?.kv) return;
    const rev = Number(last.kv.mod_revision ?? 0);
    this.noteRevision(String(rev));
    if (last.type !== 'DELETE') {
      this.present = { modRevision: rev };
      return;
    }
    this.present = undefined;
    // The marker as of the deletion's revision: written there only by a clean release.
    let clean = false;
    try {
      const r = await this.client.call<{ kvs?: KeyValue[] }>('/v3/kv/range', { key: this.markerKey, revision: String(rev) });
      clean = Number(r.kvs?.[0]?.mod_revision ?? 0) === rev;
    } catch {
      // compacted or unreachable: assume the worse (an expiry), which only delays
    }
    if (!clean) this.sawExpiry();
  }
}
