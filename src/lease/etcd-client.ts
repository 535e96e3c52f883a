// The plumbing under the etcd leaser: POSTs to etcd's v3 JSON gateway
// (gRPC-gateway: keys and values base64, int64s as decimal strings) with
// undici, trying endpoints in order, with a deadline on every request, and
// errors as one line naming the endpoint.
import { StringDecoder } from 'node:string_decoder';
import { Agent, request, type Dispatcher } from 'undici';
import { LeaseBackendError } from './lease.js';

/** A request failing with one of these never reached the server: trying the next endpoint is safe. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);

/** A LeaseBackendError that keeps etcd's own message, so callers can tell "lease not found". */
export class EtcdError extends LeaseBackendError {
  constructor(
    message: string,
    permanent = false,
    readonly etcdMessage = '',
  ) {
    super(message, permanent);
  }
}

export interface KeyValue {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}
export interface Header {
  revision?: string;
}
export interface TxnResponse {
  header?: Header;
  succeeded?: boolean;
  responses?: { response_range?: { kvs?: KeyValue[] } }[];
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

/** A gateway stream: one JSON object per line, each {"result": ...} or {"error": ...}. */
export interface EtcdStream {
  endpoint: string;
  messages: AsyncGenerator<Record<string, unknown>>;
  /** Drops the connection (the gateway keeps streams open). */
  close(): void;
}

function errCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === 'string' ? code : undefined;
}

export class EtcdClient {
  readonly endpoints: string[];
  private current = 0;
  private readonly agent: Agent;

  constructor(endpoints: string[], readonly timeoutMs: number) {
    if (endpoints.length === 0) throw new LeaseBackendError('lease.etcd: no endpoints configured', true);
    this.endpoints = endpoints.map((e) => {
      let u: URL | undefined;
      try {
        u = new URL(e);
      } catch {
        // reported below
      }
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new LeaseBackendError(`lease.etcd: endpoint ${JSON.stringify(e)} is not an http(s) URL`, true);
      return e.replace(/\/+$/, '');
    });
    // Deadlines come from AbortSignals; undici's own 300 s timers would cut long watches.
    this.agent = new Agent({ connectTimeout: timeoutMs, headersTimeout: 0, bodyTimeout: 0 });
  }

  /** The endpoint the next request goes to first. */
  get endpoint(): string {
    return this.endpoints[this.current]!;
  }

  /** One unary call: POST path with a JSON body, answered with one JSON object. */
  async call<T>(path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const signal = AbortSignal.timeout(timeoutMs);
    const { endpoint, res } = await this.send(path, body, signal, timeoutMs);
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw this.failure(endpoint, path, err, signal, timeoutMs);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new EtcdError(`etcd at ${endpoint}: ${path} answered ${JSON.stringify(text.slice(0, 120))}, not JSON`);
    }
  }

  /** The first result of a streamed call (lease keepalive), then the connection is dropped. */
  async first<T>(path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const s = await this.stream(path, body, AbortSignal.timeout(timeoutMs), timeoutMs);
    try {
      for await (const msg of s.messages) return msg as T;
      throw new EtcdError(`etcd at ${s.endpoint}: ${path} ended without an answer`);
    } finally {
      s.close();
    }
  }

  /** A streamed call (watch, keepalive): messages as they arrive; errors in the stream are thrown as EtcdError. */
  async stream(path: string, body: unknown, signal: AbortSignal, timeoutMs?: number): Promise<EtcdStream> {
    const { endpoint, res } = await this.send(path, body, signal, timeoutMs);
    const self = this;
    async function* messages(): AsyncGenerator<Record<string, unknown>> {
      const dec = new StringDecoder('utf8');
      let buf = '';
      try {
        for await (const chunk of res.body) {
          buf += dec.write(chunk as Buffer);
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line) yield self.unwrap(endpoint, path, line);
          }
        }
      } catch (err) {
        if (err instanceof EtcdError) throw err;
        throw self.failure(endpoint, path, err, signal, timeoutMs);
      }
      buf += dec.end();
      if (buf.trim()) yield self.unwrap(endpoint, path, buf.trim());
    }
    return { endpoint, messages: messages(), close: () => res.body.destroy() };
  }

  async close(): Promise<void> {
    await this.agent.destroy().catch(() => undefined);
  }

  private unwrap(endpoint: string, path: string, line: string): Record<string, unknown> {
    let msg: { result?: Record<string, unknown>; error?: { message?: string } };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      throw new EtcdError(`etcd at ${endpoint}: ${path} sent ${JSON.stringify(line.slice(0, 120))}, not JSON`);
    }
    if (msg.error || !msg.result) {
      const m = msg.error?.message ?? line.slice(0, 200);
      throw new EtcdError(`etcd at ${endpoint}: ${path}: ${m}`, false, m);
    }
    return msg.result;
  }

  private async send(path: string, body: unknown, signal: AbortSignal, timeoutMs?: number): Promise<{ endpoint: string; res: Dispatcher.ResponseData }> {
    const n = this.endpoints.length;
    const refused: string[] = [];
    for (let i = 0; i < n; i++) {
      const idx = (this.current + i) % n;
      const endpoint = this.endpoints[idx]!;
      let res: Dispatcher.ResponseData;
      try {
        res = await request(endpoint + path, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
          dispatcher: this.agent,
          signal,
        });
      } catch (err) {
        const code = errCode(err);
        if (!signal.aborted && code && CONNECT_CODES.has(code)) {
          refused.push(`${refused.length ? '' : 'etcd at '}${endpoint}: cannot connect (${code})`);
          continue;
        }
        // Sent (or maybe sent): do not repeat it elsewhere, but start the next request at another endpoint.
        this.current = (idx + 1) % n;
        throw this.failure(endpoint, path, err, signal, timeoutMs);
      }
      this.current = idx;
      if (res.statusCode !== 200) throw await this.httpError(endpoint, path, res);
      return { endpoint, res };
    }
    throw new EtcdError(refused.join('; '));
  }

  private async httpError(endpoint: string, path: string, res: Dispatcher.ResponseData): Promise<EtcdError> {
    const text = await res.body.text().catch(() => '');
    let msg = text.trim().slice(0, 200);
    let code: number | undefined;
    try {
      const j = JSON.parse(text) as { error?: string; message?: string; code?: number };
      msg = j.message ?? j.error ?? msg;
      code = j.code;
    } catch {
      // not etcd (a proxy, another server): keep the text
    }
    // Retrying cannot help: no auth, or this is not an etcd v3 gateway at all.
    const permanent = code === 16 || code === 7 || res.statusCode === 401 || res.statusCode === 403 || (res.statusCode === 404 && code === undefined);
    return new EtcdError(`etcd at ${endpoint}: ${path} answered HTTP ${res.statusCode}: ${msg}`, permanent, msg);
  }

  private failure(endpoint: string, path: string, err: unknown, signal: AbortSignal, timeoutMs?: number): EtcdError {
    if (signal.aborted) {
      const reason = signal.reason as { name?: string } | undefined;
      if (reason?.name === 'TimeoutError') return new EtcdError(`etcd at ${endpoint}: no answer to ${path} within ${timeoutMs ?? '?'} ms`);
      return new EtcdError(`etcd at ${endpoint}: ${path} aborted`);
    }
    const code = errCode(err);
    return new EtcdError(`etcd at ${endpoint}: ${path} failed (${code ?? (err as Error)?.message ?? String(err)})`);
  }
}
