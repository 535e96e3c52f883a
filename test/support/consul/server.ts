// HTTP front of the Consul stand-in (node:http): the /v1/session and /v1/kv
// endpoints a leaser uses, with Consul's status codes, texts, headers,
// ACL token check and blocking queries. Test-only.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatGoDuration, parseGoDuration } from './duration.js';
import { ConsulState, HttpError, NODE_NAME, SERF_CHECK, SESSION_TTL_MAX, SESSION_TTL_MIN, type Session, type StateOptions } from './state.js';

export interface StandInOptions extends StateOptions {
  port?: number;
  host?: string;
  /** When set, every request must present this token (the only one the stand-in knows). */
  token?: string;
}

export interface StandIn {
  url: string;
  port: number;
  /** The model behind the HTTP API, for assertions. */
  state: ConsulState;
  close(): Promise<void>;
}

/** Consul's kv_max_value_size default. */
const MAX_VALUE = 512 * 1024;
const DEFAULT_WAIT = 5 * 60_000;
const MAX_WAIT = 10 * 60_000;

type Reply = { status: number; body: unknown; index?: number };

export async function startConsulStandIn(opts: StandInOptions = {}): Promise<StandIn> {
  const state = new ConsulState(opts);
  const pending = new Set<() => void>();
  const server = http.createServer((req, res) => {
    handle(state, opts.token, pending, req, res).catch((err: unknown) => {
      send(res, state, { status: err instanceof HttpError ? err.status : 500, body: err instanceof Error ? err.message : String(err) });
    });
  });
  // Go's server keeps idle keep-alive connections; Node's default 5 s timeout would reset a client's reused socket.
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    port,
    state,
    close: async () => {
      for (const cancel of [...pending]) cancel();
      state.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

async function handle(state: ConsulState, token: string | undefined, pending: Set<() => void>, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://stand-in');
  const q = url.searchParams;
  const method = req.method ?? 'GET';
  if (token !== undefined) {
    const auth = req.headers.authorization;
    const header = req.headers['x-consul-token'];
    const given = q.get('token') || (Array.isArray(header) ? header[0] : header) || (auth?.startsWith('Bearer ') ? auth.slice(7).trim() : '');
    if (given !== token) {
      req.resume();
      // Consul: no token → the anonymous token, which a deny-by-default ACL refuses; an unknown token → "ACL not found".
      return send(res, state, { status: 403, body: given ? 'ACL not found' : 'Permission denied' });
    }
  }
  const path = url.pathname;
  const allow = (...methods: string[]): boolean => {
    if (methods.includes(method)) return true;
    req.resume();
    send(res, state, { status: 405, body: `method ${method} not allowed` });
    return false;
  };
  if (path === '/v1/session/create') {
    if (allow('PUT')) send(res, state, createSession(state, await readBody(req, MAX_VALUE)));
    return;
  }
  let m = /^\/v1\/session\/(destroy|renew|info|node)\/(.*)$/.exec(path);
  if (m) {
    const [, op, id] = m as unknown as [string, string, string];
    if (!allow(op === 'info' || op === 'node' ? 'GET' : 'PUT')) return;
    req.resume();
    if (id === '') return send(res, state, { status: 400, body: op === 'node' ? 'Missing node name' : 'Missing session' });
    if (op === 'destroy') {
      state.destroySession(id);
      return send(res, state, { status: 200, body: true });
    }
    if (op === 'renew') {
      const s = state.renewSession(id);
      return send(res, state, s ? { status: 200, body: [s], index: state.sessionsIndex } : { status: 404, body: `Session id '${id}' not found` });
    }
    const pick = (): Session[] => (op === 'info' ? [state.sessions.get(id)].filter((s): s is Session => !!s) : [...state.sessions.values()].filter((s) => s.Node === id));
    return blocking(state, pending, res, q, (fire) => state.watchSessions(fire), () => ({ status: 200, body: pick(), index: state.sessionsIndex }));
  }
  if (path === '/v1/session/list') {
    if (!allow('GET')) return;
    req.resume();
    return blocking(state, pending, res, q, (fire) => state.watchSessions(fire), () => ({ status: 200, body: [...state.sessions.values()], index: state.sessionsIndex }));
  }
  m = /^\/v1\/kv\/(.*)$/.exec(path);
  if (m) {
    if (!allow('GET', 'PUT', 'DELETE')) return;
    return kv(state, pending, req, res, q, decodeURIComponent(m[1]!));
  }
  if (path === '/v1/status/leader') {
    req.resume();
    return send(res, state, { status: 200, body: '127.0.0.1:8300' });
  }
  req.resume();
  send(res, state, { status: 404, body: '404 page not found\n' });
}

function createSession(state: ConsulState, raw: Buffer): Reply {
  let body: Record<string, unknown> = {};
  if (raw.length > 0) {
    try {
      const v = JSON.parse(raw.toString('utf8')) as unknown;
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('json: cannot unmarshal into Go value of type structs.Session');
      // Go's JSON decoding matches field names case-insensitively.
      for (const [k, x] of Object.entries(v)) body[k.toLowerCase()] = x;
    } catch (err) {
      return { status: 400, body: `Request decode failed: ${(err as Error).message}` };
    }
  }
  try {
    const str = (k: string, dflt: string): string => {
      const v = body[k];
      if (v === undefined || v === null) return dflt;
      if (typeof v !== 'string') throw new HttpError(400, `Request decode failed: json: cannot unmarshal ${typeof v} into Go struct field .${k} of type string`);
      return v;
    };
    const list = (k: string): string[] | undefined => {
      const v = body[k];
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new HttpError(400, `Request decode failed: json: cannot unmarshal into Go struct field .${k} of type []string`);
      return v as string[];
    };
    // LockDelay: a duration string or ns number; values under 1000 (ns) are taken as seconds, as Consul does.
    let lockDelay = 15e9;
    const ld = body['lockdelay'];
    if (typeof ld === 'string') lockDelay = parseOr400(ld);
    else if (typeof ld === 'number') lockDelay = Math.trunc(ld);
    else if (ld !== undefined && ld !== null) throw new HttpError(400, 'Request decode failed: LockDelay must be a duration');
    if (lockDelay < 1000) lockDelay *= 1e9;
    // Checks/NodeChecks default to the node's serfHealth; an explicit empty Checks list removes it (Consul's fixupEmptySessionChecks).
    let checks = list('checks') ?? [SERF_CHECK];
    let nodeChecks = list('nodechecks') ?? [SERF_CHECK];
    if (checks.length === 0) nodeChecks = [];
    else if (checks.length === 1 && checks[0] === SERF_CHECK) checks = [];
    else if (nodeChecks.length === 0) checks = [];
    const sc = body['servicechecks'];
    if (sc !== undefined && sc !== null && !Array.isArray(sc)) throw new HttpError(400, 'Request decode failed: ServiceChecks must be a list');
    const serviceChecks = (sc as { ID?: string; Namespace?: string }[] | undefined | null)?.map((c) => ({ ID: String(c?.ID ?? '') })) ?? null;
    const behavior = str('behavior', '') || 'release';
    if (behavior !== 'release' && behavior !== 'delete') throw new HttpError(500, `Invalid Behavior setting '${behavior}'`);
    const ttl = str('ttl', '');
    if (ttl !== '') {
      let ns: number;
      try {
        ns = parseGoDuration(ttl);
      } catch (err) {
        throw new HttpError(500, `Session TTL '${ttl}' invalid: ${(err as Error).message}`);
      }
      if (ns !== 0 && (ns < SESSION_TTL_MIN || ns > SESSION_TTL_MAX)) {
        throw new HttpError(500, `Invalid Session TTL '${ns}', must be between [${formatGoDuration(SESSION_TTL_MIN)}=${formatGoDuration(SESSION_TTL_MAX)}]`);
      }
    }
    const id = state.createSession({
      Name: str('name', ''),
      Node: str('node', NODE_NAME),
      LockDelay: lockDelay,
      Behavior: behavior,
      TTL: ttl,
      NodeChecks: [...new Set([...nodeChecks, ...checks])],
      ServiceChecks: serviceChecks && serviceChecks.length ? serviceChecks : null,
    });
    return { status: 200, body: { ID: id } };
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status, body: err.message };
    throw err;
  }
}

function parseOr400(s: string): number {
  try {
    return parseGoDuration(s);
  } catch (err) {
    throw new HttpError(400, `Request decode failed: ${(err as Error).message}`);
  }
}

async function kv(state: ConsulState, pending: Set<() => void>, req: http.IncomingMessage, res: http.ServerResponse, q: URLSearchParams, key: string): Promise<void> {
  const method = req.method;
  const uint = (name: string): number | undefined => {
    const v = q.get(name);
    if (v === null) return undefined;
    if (!/^\d+$/.test(v)) throw new HttpError(500, `strconv.ParseUint: parsing ${JSON.stringify(v)}: invalid syntax`);
    return Number(v);
  };
  try {
    if (method === 'GET') {
      req.resume();
      const keys = q.has('keys');
      const recurse = q.has('recurse') || keys;
      const sep = q.get('separator') ?? '';
      return blocking(state, pending, res, q, (fire) => state.watchKV(key, recurse, fire), () => {
        const { index, entries } = state.kvRead(key, recurse);
        if (!entries.length) return { status: 404, body: undefined, index };
        if (keys) {
          const out = new Set<string>();
          for (const e of entries) {
            const cut = sep ? e.Key.indexOf(sep, key.length) : -1;
            out.add(cut >= 0 ? e.Key.slice(0, cut + sep.length) : e.Key);
          }
          return { status: 200, body: [...out], index };
        }
        if (q.has('raw')) return { status: 200, body: Buffer.from(entries[0]!.Value ?? '', 'base64'), index };
        return { status: 200, body: entries, index };
      });
    }
    if (method === 'PUT') {
      if (key === '') {
        req.resume();
        return send(res, state, { status: 400, body: 'Missing key name' });
      }
      const value = await readBody(req, MAX_VALUE);
      const ok = state.kvPut(key, value, {
        flags: uint('flags') ?? 0,
        cas: uint('cas'),
        acquire: q.get('acquire') ?? undefined,
        release: q.get('release') ?? undefined,
      });
      return send(res, state, { status: 200, body: ok });
    }
    req.resume();
    if (key === '' && !q.has('recurse')) return send(res, state, { status: 400, body: 'Missing key name' });
    return send(res, state, { status: 200, body: state.kvDelete(key, { recurse: q.has('recurse'), cas: uint('cas') }) });
  } catch (err) {
    if (err instanceof HttpError) return send(res, state, { status: err.status, body: err.message });
    throw err;
  }
}

/**
 * A read that honours ?index=N&wait=D: answers at once when the result's
 * index already exceeds N, else when a watched change makes it exceed N, or
 * when the wait (default 5 min, max 10 min, plus up to 1/16 jitter) elapses.
 */
function blocking(
  state: ConsulState,
  pending: Set<() => void>,
  res: http.ServerResponse,
  q: URLSearchParams,
  watch: (fire: () => void) => () => void,
  read: () => Reply,
): void {
  let minIndex = 0;
  let wait = DEFAULT_WAIT;
  const w = q.get('wait');
  if (w !== null && w !== '') {
    try {
      wait = parseGoDuration(w) / 1e6;
    } catch {
      return send(res, state, { status: 400, body: 'Invalid wait time' });
    }
  }
  const i = q.get('index');
  if (i !== null && i !== '') {
    if (!/^\d+$/.test(i)) return send(res, state, { status: 400, body: 'Invalid index' });
    minIndex = Number(i);
  }
  const first = read();
  if (minIndex === 0 || (first.index ?? 0) > minIndex) return send(res, state, first);
  if (wait <= 0 || wait > MAX_WAIT) wait = wait > MAX_WAIT ? MAX_WAIT : DEFAULT_WAIT;
  wait += Math.random() * (wait / 16);
  let done = false;
  const finish = (reply?: Reply): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    unwatch();
    pending.delete(cancel);
    if (reply) send(res, state, reply);
    else res.destroy();
  };
  const cancel = (): void => finish();
  const unwatch = watch(() => {
    const r = read();
    if ((r.index ?? 0) > minIndex) finish(r);
  });
  const timer = setTimeout(() => finish(read()), wait);
  pending.add(cancel);
  res.on('close', () => finish());
}

function send(res: http.ServerResponse, state: ConsulState, reply: Reply): void {
  if (res.headersSent || res.destroyed) return;
  res.setHeader('X-Consul-Index', String(reply.index ?? state.index));
  res.setHeader('X-Consul-KnownLeader', 'true');
  res.setHeader('X-Consul-LastContact', '0');
  let data: Buffer;
  if (reply.body === undefined) {
    data = Buffer.alloc(0);
  } else if (Buffer.isBuffer(reply.body)) {
    data = reply.body;
    res.setHeader('Content-Type', 'application/octet-stream');
  } else if (typeof reply.body === 'string' && reply.status !== 200) {
    data = Buffer.from(reply.body);
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  } else {
    data = Buffer.from(JSON.stringify(reply.body));
    res.setHeader('Content-Type', 'application/json');
  }
  res.writeHead(reply.status, { 'Content-Length': data.length });
  res.end(data);
}

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > max) throw new HttpError(413, `Request body(${n} bytes) too large, max size: ${max} bytes.`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
