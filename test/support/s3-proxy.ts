// A reverse proxy in front of s3rver that injects the faults s3rver cannot
// produce: 5xx answers, an S3 that hangs, answers slowly or refuses
// connections, and SigV4 checking (s3rver accepts any V4 signature from a
// known key id). Bodies stream through both ways; headers, Host included,
// are forwarded as sent so signatures stay meaningful.
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

import { freePort } from './cluster.js';

export type FaultMode = 'pass' | 'down' | 'hang' | 'slow' | 'refuse' | 'reset';

export interface ProxyRequest {
  method: string;
  url: string;
  /** Status sent to the client; null while pending, or if it never got one (hang, upstream gone). */
  status: number | null;
  /** Which fault answered it, when it was not forwarded normally. */
  fault?: 'fail' | 'down' | 'hang' | 'slow' | 'reset' | 'auth' | 'upstream';
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  /** Log of every request that reached the proxy, oldest first. */
  readonly requests: ProxyRequest[];
  clear(): void;
  /** Back to normal forwarding: ends any mode and pending failNext, releases hung requests. */
  pass(): Promise<void>;
  /** The next n requests get `status` with an S3 XML error, without being forwarded. */
  failNext(n: number, status?: number): void;
  /**
   * down: every request 503 ServiceUnavailable; hang: requests are never
   * answered (their sockets are destroyed on pass()); slow: each upstream
   * answer is held delayMs (the request itself is forwarded at once, so a
   * write lands even if the client gives up); refuse: the port stops
   * listening (ECONNREFUSED); reset: connections are accepted and destroyed.
   */
  setMode(mode: FaultMode, opts?: { delayMs?: number }): Promise<void>;
  readonly mode: FaultMode;
  /** Verify each request's SigV4 signature; 403 when it does not match. */
  checkSignatures(on: boolean): void;
  close(): Promise<void>;
}

const ERROR_CODES: Record<number, [string, string]> = {
  400: ['InvalidRequest', 'Injected fault.'],
  403: ['AccessDenied', 'Access Denied'],
  404: ['NoSuchKey', 'The specified key does not exist.'],
  409: ['OperationAborted', 'A conflicting conditional operation is in progress.'],
  412: ['PreconditionFailed', 'At least one of the preconditions you specified did not hold.'],
  500: ['InternalError', 'We encountered an internal error. Please try again.'],
  503: ['ServiceUnavailable', 'Please reduce your request rate.'],
};

// Headers that describe one connection, not the message.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect',
]);

function forwardableHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

const xmlEscape = (s: string) =>
  s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);

function sendError(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string): void {
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(code)}</Code>` +
    `<Message>${xmlEscape(message)}</Message><RequestId>${crypto.randomBytes(8).toString('hex')}</RequestId></Error>`;
  // Let the client reuse the connection: drain whatever body it is sending.
  req.resume();
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
}

// ---- SigV4 ---------------------------------------------------------------

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ */
const uriEncode = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

const hmac = (key: crypto.BinaryLike, data: string) => crypto.createHmac('sha256', key).update(data).digest();
const sha256hex = (data: string) => crypto.createHash('sha256').update(data).digest('hex');

interface AuthCheck {
  status: number;
  code: string;
  message: string;
}

/** decodeURIComponent that leaves malformed escapes as they are rather than throw. */
function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Recomputes the SigV4 signature of an incoming request from its
 * Authorization header and compares it; null when it verifies. The payload
 * hash is taken from x-amz-content-sha256 as sent: the body itself (and any
 * aws-chunked chunk signatures) is not checked, nor are presigned URLs.
 */
export function verifySigV4(
  req: http.IncomingMessage,
  creds: { accessKeyId: string; secretAccessKey: string; region: string },
): AuthCheck | null {
  const auth = req.headers['authorization'];
  if (!auth) return { status: 403, code: 'AccessDenied', message: 'Access Denied' };
  const m = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$/.exec(auth.trim());
  if (!m) return { status: 400, code: 'AuthorizationHeaderMalformed', message: 'The authorization header is malformed.' };
  const [, credential = '', signedHeaders = '', signature = ''] = m;
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const payloadHash = String(req.headers['x-amz-content-sha256'] ?? '');
  if (!payloadHash) return { status: 400, code: 'InvalidRequest', message: 'Missing required header x-amz-content-sha256.' };

  const [keyId, date, region, service, terminator] = credential.split('/');
  if (keyId !== creds.accessKeyId) {
    return { status: 403, code: 'InvalidAccessKeyId', message: 'The AWS Access Key Id you provided does not exist in our records.' };
  }
  if (!date || region !== creds.region || service !== 's3' || terminator !== 'aws4_request' || !amzDate.startsWith(date)) {
    return { status: 400, code: 'AuthorizationHeaderMalformed', message: `Bad credential scope ${credential}.` };
  }

  // S3 signs the path as sent (encoded once, not normalized) and the query
  // as decoded-then-reencoded pairs, sorted.
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  const canonicalPath = (q < 0 ? rawUrl : rawUrl.slice(0, q)) || '/';
  const pairs: [string, string][] = [];
  for (const part of q < 0 ? [] : rawUrl.slice(q + 1).split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = decode(eq < 0 ? part : part.slice(0, eq));
    const v = eq < 0 ? '' : decode(part.slice(eq + 1));
    pairs.push([uriEncode(k), uriEncode(v)]);
  }
  pairs.sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  const canonicalQuery = pairs.map(([k, v]) => `${k}=${v}`).join('&');

  // Canonical headers from the raw list, so repeated headers join with ','.
  const values = new Map<string, string[]>();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const list = values.get(name) ?? [];
    list.push(req.rawHeaders[i + 1]!.trim().replace(/\s+/g, ' '));
    values.set(name, list);
  }
  const names = signedHeaders.split(';');
  const canonicalHeaders = names.map((n) => `${n}:${(values.get(n) ?? []).join(',')}\n`).join('');

  const canonicalRequest = [req.method, canonicalPath, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
  let key = hmac(`AWS4${creds.secretAccessKey}`, date);
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
  const expected = crypto.createHmac('sha256', key).update(stringToSign).digest('hex');
  if (expected.length === signature.length && crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
    return null;
  }
  return {
    status: 403,
    code: 'SignatureDoesNotMatch',
    message: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
  };
}

// ---- the proxy -----------------------------------------------------------

export async function startFaultProxy(
  target: string,
  opts: { accessKeyId?: string; secretAccessKey?: string; region?: string } = {},
): Promise<FaultProxy> {
  const upstream = new URL(target);
  const creds = {
    accessKeyId: opts.accessKeyId ?? 'S3RVER',
    secretAccessKey: opts.secretAccessKey ?? 'S3RVER',
    region: opts.region ?? 'us-east-1',
  };
  const agent = new http.Agent({ keepAlive: true });
  const requests: ProxyRequest[] = [];
  const sockets = new Set<net.Socket>();
  const hung = new Set<http.ServerResponse>();
  let mode: FaultMode = 'pass';
  let delayMs = 0;
  let failCount = 0;
  let failStatus = 503;
  let signatures = false;
  let closed = false;

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, entry: ProxyRequest, delay: number): void => {
    const up = http.request({
      agent,
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: forwardableHeaders(req.rawHeaders),
    });
    // Upstream unreachable (s3rver stopped): drop the client's connection, as
    // a dead S3 endpoint would, rather than invent an HTTP answer.
    up.on('error', () => {
      entry.fault ??= 'upstream';
      if (!res.writableFinished) res.destroy();
    });
    up.on('response', (upRes) => {
      const reply = () => {
        if (res.destroyed) return upRes.destroy();
        entry.status = upRes.statusCode ?? 502;
        res.writeHead(entry.status, forwardableHeaders(upRes.rawHeaders));
        upRes.pipe(res);
        upRes.on('error', () => res.destroy());
      };
      if (delay > 0) setTimeout(reply, delay);
      else reply();
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  };

  const server = http.createServer((req, res) => {
    const entry: ProxyRequest = { method: req.method ?? 'GET', url: req.url ?? '/', status: null };
    requests.push(entry);
    // A kept-alive connection from before the switch to 'reset'.
    if (mode === 'reset') {
      entry.fault = 'reset';
      return void req.socket.destroy();
    }
    res.on('finish', () => (entry.status = res.statusCode));
    if (failCount > 0) {
      failCount--;
      entry.fault = 'fail';
      const [code, message] = ERROR_CODES[failStatus] ?? ['InternalError', 'Injected fault.'];
      return sendError(req, res, failStatus, code, message);
    }
    if (mode === 'down') {
      entry.fault = 'down';
      return sendError(req, res, 503, 'ServiceUnavailable', 'Please reduce your request rate.');
    }
    if (mode === 'hang') {
      entry.fault = 'hang';
      hung.add(res);
      res.on('close', () => hung.delete(res));
      return;
    }
    if (signatures) {
      const bad = verifySigV4(req, creds);
      if (bad) {
        entry.fault = 'auth';
        return sendError(req, res, bad.status, bad.code, bad.message);
      }
    }
    if (mode === 'slow') entry.fault = 'slow';
    forward(req, res, entry, mode === 'slow' ? delayMs : 0);
  });
  server.on('connection', (sock) => {
    if (mode === 'reset' || mode === 'refuse') return void sock.destroy();
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  server.on('clientError', (_err, sock) => sock.destroy());

  const port = await freePort();
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const unlisten = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  const releaseHung = () => {
    for (const res of hung) res.socket?.destroy();
    hung.clear();
  };
  await listen();

  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    requests,
    clear() {
      requests.length = 0;
    },
    async pass() {
      failCount = 0;
      await proxy.setMode('pass');
    },
    failNext(n, status = 503) {
      failCount = n;
      failStatus = status;
    },
    async setMode(next, o = {}) {
      if (closed) throw new Error('fault proxy is closed');
      const prev = mode;
      mode = next;
      delayMs = o.delayMs ?? (next === 'slow' ? 1000 : 0);
      if (prev === 'hang' && next !== 'hang') releaseHung();
      if (next === 'refuse') {
        await unlisten();
        // Let in-process clients see their pooled connections close, so their
        // next request opens a new one and is refused rather than reset.
        await new Promise((r) => setTimeout(r, 20));
      } else if (!server.listening) await listen();
    },
    get mode() {
      return mode;
    },
    checkSignatures(on) {
      signatures = on;
    },
    async close() {
      if (closed) return;
      closed = true;
      releaseHung();
      await unlisten();
      agent.destroy();
    },
  };
  return proxy;
}
