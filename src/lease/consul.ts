// The primary lease on Consul, as LiteFS holds it: a session (Behavior
// delete, TTL, LockDelay, no health checks) that locks the lease key with
// `PUT kv/<key>?acquire=<session>`, renewed with `session/renew`. Consul
// invalidates the session TTL..2×TTL after the last renewal, deletes the
// key, and refuses the key to everyone for LockDelay. Spoken through the
// `consul` npm client; the ACL token comes from the URL's password.
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import Consul from 'consul';
import {
  formatPrimaryInfo, LeaseBackendError, LeaseHeldError, LeaseLostError, MalformedLeaseValueError, parsePrimaryInfo,
  type Lease, type Leaser, type LeaserOptions, type PrimaryInfo,
} from './lease.js';

export interface ConsulLeaserOptions extends LeaserOptions {
  /** Consul's base URL; `http://:TOKEN@host:8500` carries the ACL token. */
  url: string;
}

/** What the consul client's KV get yields (its typings omit Session). */
interface KVItem {
  Value?: string | null;
  Session?: string;
}

/** The shapes of the errors the consul client (papi) rejects with. */
interface ClientError {
  message: string;
  code?: string;
  isTimeout?: boolean;
  isAbort?: boolean;
  response?: { statusCode?: number; body?: unknown };
}

type Call = (opts: Record<string, unknown>) => Promise<unknown>;

/** papi reads `includeResponse` from an EventEmitter ctx and aborts the request on its 'cancel' event. */
function responseCtx(): EventEmitter & { includeResponse: boolean } {
  return Object.assign(new EventEmitter(), { includeResponse: true });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

export class ConsulLeaser implements Leaser {
  readonly type = 'consul' as const;
  readonly describe: string;
  /** Scheme, host and port only: no credentials, safe to print. */
  readonly baseUrl: string;
  readonly key: string;
  private readonly client: Consul;
  private readonly value: string;
  /** Per-request timeout: well under TTL/2 so a hung Consul cannot hold a renewal past the lease. */
  private readonly timeout: number;
  /** X-Consul-Index of the last read of the key: waitForChange blocks until it moves. */
  private lastIndex = 0;
  private readonly waits = new Set<() => void>();
  private closed = false;
  private readonly call: { get: Call; set: Call; create: Call; renew: Call; destroy: Call };

  // Private: opts.url may carry the ACL token.
  constructor(private readonly opts: ConsulLeaserOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new LeaseBackendError(`consul: lease.consul.url ${JSON.stringify(opts.url.replace(/\/\/[^@/]*@/, '//'))} is not a URL`, true);
    }
    const secure = u.protocol === 'https:';
    const token = decodeURIComponent(u.password);
    this.baseUrl = `${u.protocol}//${u.host}`;
    this.key = opts.key;
    this.describe = `consul ${this.baseUrl} key ${JSON.stringify(opts.key)}`;
    this.value = formatPrimaryInfo({ hostname: opts.hostname, advertiseUrl: opts.advertiseUrl });
    this.timeout = Math.max(500, Math.min(5000, Math.floor(opts.ttl / 3)));
    this.client = new Consul({
      host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(u.port) || (secure ? 443 : 80),
      secure,
      defaults: { ...(token ? { token } : {}), timeout: this.timeout } as { token?: string },
    });
    // The client's typings omit the options used here (timeout, ctx, cas=0 ...): one cast, in one place.
    const c = this.client as unknown as { kv: Record<string, Call>; session: Record<string, Call> };
    this.call = {
      get: (o) => c.kv['get']!.call(c.kv, o),
      set: (o) => c.kv['set']!.call(c.kv, o),
      create: (o) => c.session['create']!.call(c.session, o),
      renew: (o) => c.session['renew']!.call(c.session, o),
      destroy: (o) => c.session['destroy']!.call(c.session, o),
    };
  }

  async acquire(): Promise<Lease> {
    const sent = Date.now();
    const id = await this.createSession();
    let ok: unknown;
    try {
      ok = await this.call.set({ key: this.key, value: this.value, acquire: id });
    } catch (err) {
      await this.destroyQuietly(id, this.timeout);
      throw this.backendError(err, 'acquire');
    }
    if (ok !== true) {
      // Not ours: drop the session so it does not linger until its TTL.
      await this.destroyQuietly(id, this.timeout);
      throw await this.heldError();
    }
    this.opts.log?.debug({ session: id, key: this.key }, 'consul lease acquired');
    return new ConsulLease(this, id, this.opts.ttl, sent);
  }

  async acquireExisting(id: string): Promise<Lease> {
    let ok: unknown;
    try {
      // The session already holds the key: acquiring again keeps the lock (same LockIndex) and writes our info.
      ok = await this.call.set({ key: this.key, value: this.value, acquire: id });
    } catch (err) {
      if (isInvalidSession(err)) throw new LeaseLostError(`consul session ${id} handed over for ${JSON.stringify(this.key)} is gone`);
      throw this.backendError(err, 'acquire (handoff)');
    }
    if (ok !== true) throw new LeaseLostError(`consul session ${id} handed over no longer holds ${JSON.stringify(this.key)}`);
    const lease = new ConsulLease(this, id, this.opts.ttl, Date.now());
    await lease.renew();
    return lease;
  }

  async primaryInfo(): Promise<PrimaryInfo | undefined> {
    const item = await this.readKey();
    if (!item || !item.Session) return undefined;
    return parsePrimaryInfo(item.Value ?? '', `consul key ${JSON.stringify(this.key)}`);
  }

  async waitForChange(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted) return;
    const ctx = responseCtx();
    const started = Date.now();
    let finished = false;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waits.delete(done);
        ctx.emit('cancel');
        resolve();
      };
      // Consul may answer up to wait/16 late (jitter): our own timer keeps the promise to return by timeoutMs.
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', done, { once: true });
      this.waits.add(done);
      const wait = `${Math.max(1, Math.ceil(timeoutMs))}ms`;
      this.call
        .get({ key: this.key, index: String(this.lastIndex), wait, ctx, timeout: timeoutMs + 5000 })
        .then((r) => this.noteIndex((r as [IncomingMessage])[0]))
        .then(done, async (err: unknown) => {
          if (finished) return;
          this.opts.log?.debug({ err: (err as Error).message }, 'consul blocking query failed');
          // Back off a little (within the timeout) so a caller's loop does not spin on a dead Consul.
          await sleep(Math.min(1000, Math.max(0, timeoutMs - (Date.now() - started))));
          done();
        });
    });
  }

  async clusterId(): Promise<string | undefined> {
    const [, item] = (await this.request(this.call.get({ key: `${this.key}/cluster-id`, ctx: responseCtx() }), 'read cluster id')) as [unknown, KVItem?];
    return item?.Value || undefined;
  }

  async setClusterId(id: string): Promise<string> {
    // cas=0: written only if absent, so two nodes racing agree on the first one.
    await this.request(this.call.set({ key: `${this.key}/cluster-id`, value: id, cas: 0 }), 'record cluster id');
    const stored = await this.clusterId();
    if (!stored) throw new LeaseBackendError(`consul at ${this.baseUrl}: cluster id under ${JSON.stringify(`${this.key}/cluster-id`)} vanished after it was written`);
    return stored;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const done of [...this.waits]) done();
    this.client.destroy();
  }

  // ---- used by ConsulLease ----

  async renewSession(id: string): Promise<void> {
    try {
      await this.call.renew({ id });
    } catch (err) {
      if (statusOf(err) === 404) throw new LeaseLostError(`consul session ${id} for ${JSON.stringify(this.key)} expired or was destroyed: lease lost`);
      throw this.backendError(err, 'renew');
    }
  }

  /** Releases the key then destroys the session, within about budgetMs; errors are swallowed (the TTL ends it anyway). */
  async releaseSession(id: string, budgetMs: number): Promise<void> {
    const deadline = Date.now() + budgetMs;
    try {
      await this.call.set({ key: this.key, value: '', release: id, timeout: budgetMs });
    } catch (err) {
      this.opts.log?.debug({ err: (err as Error).message }, 'consul release failed');
    }
    await this.destroyQuietly(id, Math.max(100, deadline - Date.now()));
  }

  // ---- internals ----

  private async createSession(): Promise<string> {
    try {
      const out = (await this.call.create({
        name: `litefs-${this.opts.hostname}`,
        behavior: 'delete',
        ttl: `${this.opts.ttl / 1000}s`,
        lockdelay: `${this.opts.lockDelay}ms`,
        // An explicit empty list drops the default serfHealth check: the session depends on renewals only.
        checks: [],
      })) as { ID?: string };
      if (!out?.ID) throw new LeaseBackendError(`consul at ${this.baseUrl}: session create answered without an ID`);
      return out.ID;
    } catch (err) {
      if (err instanceof LeaseBackendError) throw err;
      const status = statusOf(err);
      const body = bodyOf(err);
      // Consul answers a TTL out of 10s..24h with 500 "Invalid Session TTL ..." and a bad body with 400.
      if (status === 400 || (status === 500 && /Session TTL|Behavior|LockDelay|duration/i.test(body))) {
        const field = /TTL/i.test(body) ? `lease.consul.ttl (${this.opts.ttl / 1000}s; Consul accepts 10s to 24h)` : 'lease.consul.ttl / lease.consul.lock-delay';
        throw new LeaseBackendError(`consul at ${this.baseUrl} refused to create a session: ${JSON.stringify(body)}; check ${field}`, true);
      }
      throw this.backendError(err, 'session create');
    }
  }

  private async readKey(): Promise<KVItem | undefined> {
    const [res, item] = (await this.request(this.call.get({ key: this.key, ctx: responseCtx() }), 'read')) as [IncomingMessage, KVItem?];
    this.noteIndex(res);
    return item;
  }

  private noteIndex(res: IncomingMessage | undefined): void {
    const idx = Number(res?.headers?.['x-consul-index']);
    if (!Number.isSafeInteger(idx) || idx <= 0) return;
    // An index that goes backwards means Consul's state was reset: start over, as Consul's docs advise.
    this.lastIndex = idx < this.lastIndex ? 0 : idx;
  }

  private async heldError(): Promise<LeaseHeldError> {
    let item: KVItem | undefined;
    try {
      item = await this.readKey();
    } catch {
      return new LeaseHeldError(`consul key ${JSON.stringify(this.key)} is held by another session`);
    }
    if (!item?.Session) {
      return new LeaseHeldError(`consul key ${JSON.stringify(this.key)} is free but Consul refused it: lock-delay after the previous holder's session ended (up to ${this.opts.lockDelay} ms)`);
    }
    try {
      const holder = parsePrimaryInfo(item.Value ?? '', `consul key ${JSON.stringify(this.key)}`);
      return new LeaseHeldError(`consul key ${JSON.stringify(this.key)} is held by ${holder.hostname} (${holder.advertiseUrl})`, holder);
    } catch (err) {
      if (!(err instanceof MalformedLeaseValueError)) throw err;
      return new LeaseHeldError(`consul key ${JSON.stringify(this.key)} is held by session ${item.Session}, whose value is not a litefs primary's: ${err.message}`);
    }
  }

  private async destroyQuietly(id: string, timeout: number): Promise<void> {
    try {
      await this.call.destroy({ id, timeout });
    } catch (err) {
      this.opts.log?.debug({ session: id, err: (err as Error).message }, 'consul session destroy failed');
    }
  }

  private async request<T>(p: Promise<T>, what: string): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw this.backendError(err, what);
    }
  }

  /** One line naming the URL (never the token) and what went wrong. */
  private backendError(err: unknown, what: string): LeaseBackendError {
    const e = err as ClientError;
    const status = statusOf(err);
    if (status === 403) {
      return new LeaseBackendError(`consul at ${this.baseUrl}: the ACL token was refused (403 ${JSON.stringify(bodyOf(err))}) on ${what}; check the token in lease.consul.url`, true);
    }
    if (status !== undefined) return new LeaseBackendError(`consul at ${this.baseUrl}: ${what} failed: HTTP ${status} ${JSON.stringify(bodyOf(err))}`);
    if (e?.isTimeout) return new LeaseBackendError(`consul at ${this.baseUrl}: no answer within ${this.timeout} ms (${what})`);
    if (e?.code) return new LeaseBackendError(`consul at ${this.baseUrl}: cannot connect (${e.code})`);
    return new LeaseBackendError(`consul at ${this.baseUrl}: ${what} failed: ${String(e?.message ?? err).replace(/^consul: [\w.]+: /, '')}`);
  }
}

class ConsulLease implements Lease {
  private abandoned = false;
  private released = false;

  constructor(
    private readonly leaser: ConsulLeaser,
    readonly id: string,
    readonly ttl: number,
    public renewedAt: number,
  ) {}

  async renew(): Promise<void> {
    if (this.abandoned || this.released) throw new LeaseLostError(`consul session ${this.id} was ${this.abandoned ? 'handed over' : 'released'}`);
    const sent = Date.now();
    await this.leaser.renewSession(this.id);
    this.renewedAt = sent;
  }

  async release(): Promise<void> {
    if (this.abandoned || this.released) return;
    this.released = true;
    await this.leaser.releaseSession(this.id, 2000);
  }

  abandon(): void {
    this.abandoned = true;
  }
}

function statusOf(err: unknown): number | undefined {
  const s = (err as ClientError)?.response?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function bodyOf(err: unknown): string {
  const b = (err as ClientError)?.response?.body;
  const text = typeof b === 'string' ? b : Buffer.isBuffer(b) ? b.toString('utf8') : b === undefined ? '' : JSON.stringify(b);
  return text.trim().slice(0, 200);
}

/** Consul answers an acquire with an unknown session by 500 `invalid session "<id>"`. */
function isInvalidSession(err: unknown): boolean {
  return statusOf(err) === 500 && /invalid session|missing session/i.test(bodyOf(err));
}
