// The node's HTTP API (fastify): /info, /export, /import. Errors are JSON
// {error: "..."} with a clear message and a fitting status.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { parseHostPort } from '../config/index.js';
import { formatPosition, parsePosition } from '../txlog/checksum.js';
import type { Streamer } from '../replication/streamer.js';
import type { Position } from '../store/db.js';
import { exportDatabase, importDatabase, ImportError } from '../store/transfer.js';

export interface NodeInfo {
  hostname: string;
  advertiseUrl: string;
  candidate: boolean;
  isPrimary: () => boolean;
  primaryHostname: () => string | undefined;
  /** The replication stream's server side, on a primary. */
  streamer: () => Streamer | undefined;
}

/** A replica's positions from a POST body {hostname, positions} or GET ?hostname=&pos=db:txid/checksum. */
function streamRequest(method: string, body: unknown, query: Record<string, string | string[] | undefined>): { hostname: string; positions: Map<string, Position> } {
  const positions = new Map<string, Position>();
  let hostname: unknown;
  let entries: [string, unknown][];
  if (method === 'POST') {
    const b = (body ?? {}) as { hostname?: unknown; positions?: unknown };
    if (typeof b !== 'object' || (b.positions !== undefined && (typeof b.positions !== 'object' || b.positions === null))) throw badRequest('stream: the body must be JSON {"hostname": "...", "positions": {"<db>": "<txid>/<checksum>"}}');
    hostname = b.hostname;
    entries = Object.entries((b.positions ?? {}) as Record<string, unknown>);
  } else {
    hostname = query.hostname;
    const pos = query.pos === undefined ? [] : Array.isArray(query.pos) ? query.pos : [query.pos];
    entries = pos.map((p) => {
      const i = p.lastIndexOf(':');
      if (i <= 0) throw badRequest(`stream: pos "${p}" is not <db>:<txid>/<checksum>`);
      return [p.slice(0, i), p.slice(i + 1)];
    });
  }
  for (const [name, text] of entries) {
    if (!DB_NAME.test(name) || typeof text !== 'string') throw badRequest(`stream: bad position for database "${name}"`);
    try {
      positions.set(name, parsePosition(text));
    } catch (err) {
      throw badRequest(`stream: position of "${name}": ${(err as Error).message}`);
    }
  }
  return { hostname: typeof hostname === 'string' && hostname ? hostname : 'unknown', positions };
}

function badRequest(message: string): Error & { statusCode: number } {
  return Object.assign(new Error(message), { statusCode: 400 });
}

const DB_NAME = /^[^/\0]+$/;

export async function startHttpServer(addr: string, store: Store, info: NodeInfo, log: Logger, mountDir: string): Promise<{ app: FastifyInstance; url: string }> {
  // pino's Logger and fastify's logger type differ only in generics

  // Requests log at info: this child logs warnings and errors only.
  const app = Fastify({ loggerInstance: log.child({ component: 'http' }, { level: 'warn' }) as unknown as FastifyBaseLogger, bodyLimit: 64 * 1024 ** 3 });
  app.addContentTypeParser('application/octet-stream', (_req, body, done) => done(null, body));

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const status = err instanceof ImportError ? 400 : (err.statusCode ?? 500);
    if (status >= 500) log.error({ err: err.message }, 'http request failed');
    void reply.status(status).send({ error: err.message });
  });

  app.get('/info', async () => ({
    hostname: info.hostname,
    advertiseUrl: info.advertiseUrl,
    candidate: info.candidate,
    isPrimary: info.isPrimary(),
    primary: info.primaryHostname() ?? null,
    databases: Object.fromEntries(
      [...store.dbs.values()].map((db) => [db.name, { txid: db.position.txid, position: formatPosition(db.position.txid, db.position.checksum), pageSize: db.pageSize, pages: db.commitSize }]),
    ),
  }));

  const stream = async (req: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const replica = streamRequest(req.method, req.body, req.query as Record<string, string | string[] | undefined>);
    const streamer = info.streamer();
    if (!info.isPrimary() || !streamer) return reply.status(409).send({ error: `this node is not the primary; the primary is ${info.primaryHostname() ?? 'unknown'}` });
    reply.hijack();
    await streamer.serve(reply.raw, replica);
  };
  app.post('/stream', stream);
  app.get('/stream', stream);

  app.get('/export', async (req, reply) => {
    const name = (req.query as { name?: string }).name;
    if (!name || !DB_NAME.test(name)) return reply.status(400).send({ error: 'export needs ?name=DB' });
    if (!store.dbs.has(name)) return reply.status(404).send({ error: `database "${name}" not found` });
    const bytes = await exportDatabase(`${mountDir}/${name}`);
    return reply.type('application/octet-stream').send(bytes);
  });

  app.post('/import', async (req, reply) => {
    const name = (req.query as { name?: string }).name;
    if (!name || !DB_NAME.test(name)) return reply.status(400).send({ error: 'import needs ?name=DB' });
    if (!info.isPrimary()) return reply.status(409).send({ error: `this node is not the primary; import on ${info.primaryHostname() ?? 'the primary'}` });
    const result = await importDatabase(req.raw, `${mountDir}/${name}`, store.dataDir);
    const db = store.dbs.get(name);
    return { name, txid: db?.position.txid ?? 0, bytes: result.bytes };
  });

  const hp = parseHostPort(addr);
  if (!hp) throw new Error(`http.addr "${addr}" is not [host]:port`);
  const url = await app.listen({ host: hp.host || '0.0.0.0', port: hp.port });
  return { app, url };
}
