// The node's HTTP API (fastify): /info, /export, /import. Errors are JSON
// {error: "..."} with a clear message and a fitting status.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { parseHostPort } from '../config/index.js';
import { formatPosition, parsePosition } from '../txlog/checksum.js';
import type { ReplicaRequest, Streamer } from '../replication/streamer.js';
import type { NodeLifecycle } from '../lease/lifecycle.js';
import type { Position } from '../store/types.js';
import { createMetrics } from './metrics.js';
import type { DbBackupStatus } from '../backup/uploader.js';
import { exportDatabase, importDatabase, ImportError } from '../store/transfer.js';

export interface NodeInfo {
  hostname: string;
  advertiseUrl: string;
  candidate: boolean;
  isPrimary: () => boolean;
  primaryHostname: () => string | undefined;
  /** The replication stream's server side, on a primary. */
  streamer: () => Streamer | undefined;
  clusterId: () => string | undefined;
  lagMs: () => number;
  lifecycle: Pick<NodeLifecycle, 'promote' | 'handoff' | 'stats'>;
  /** The S3 backup's state per database, when `backup` is configured. */
  backup?: () => DbBackupStatus[];
}

/** A replica's request from a POST body {hostname, nodeId, clusterId, positions} or GET ?hostname=&pos=db:txid/checksum. */
function streamRequest(method: string, body: unknown, query: Record<string, string | string[] | undefined>): ReplicaRequest & { clusterId?: string } {
  const positions = new Map<string, Position>();
  let hostname: unknown;
  let nodeId: unknown;
  let clusterId: unknown;
  let entries: [string, unknown][];
  if (method === 'POST') {
    const b = (body ?? {}) as { hostname?: unknown; positions?: unknown };
    if (typeof b !== 'object' || (b.positions !== undefined && (typeof b.positions !== 'object' || b.positions === null))) throw badRequest('stream: the body must be JSON {"hostname": "...", "positions": {"<db>": "<txid>/<checksum>"}}');
    hostname = b.hostname;
    nodeId = (b as { nodeId?: unknown }).nodeId;
    clusterId = (b as { clusterId?: unknown }).clusterId;
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
  return {
    hostname: typeof hostname === 'string' && hostname ? hostname : 'unknown',
    nodeId: typeof nodeId === 'string' ? nodeId : undefined,
    clusterId: typeof clusterId === 'string' && clusterId ? clusterId : undefined,
    positions,
    history: method === 'POST' ? parseHistory((body as { history?: unknown }).history) : undefined,
  };
}

/** {"<db>": ["<txid>/<checksum>", ...]} → positions; bad entries are a 400. */
function parseHistory(v: unknown): Map<string, Position[]> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw badRequest('stream: "history" must map database names to lists of positions');
  const out = new Map<string, Position[]>();
  for (const [name, list] of Object.entries(v as Record<string, unknown>)) {
    if (!Array.isArray(list) || list.some((p) => typeof p !== 'string')) throw badRequest(`stream: history of "${name}" must be a list of "<txid>/<checksum>"`);
    try {
      out.set(name, (list as string[]).map(parsePosition));
    } catch (err) {
      throw badRequest(`stream: history of "${name}": ${(err as Error).message}`);
    }
  }
  return out;
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
    clusterId: info.clusterId() ?? null,
    isPrimary: info.isPrimary(),
    primary: info.primaryHostname() ?? null,
    databases: Object.fromEntries(
      [...store.dbs.values()].map((db) => [db.name, { txid: db.position.txid, position: formatPosition(db.position.txid, db.position.checksum), pageSize: db.pageSize, pages: db.commitSize }]),
    ),
    ...(info.backup ? { backup: Object.fromEntries(info.backup().map(({ db, ...rest }) => [db, rest])) } : {}),
  }));

  const stream = async (req: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const replica = streamRequest(req.method, req.body, req.query as Record<string, string | string[] | undefined>);
    const streamer = info.streamer();
    if (!info.isPrimary() || !streamer) return reply.status(409).send({ error: `this node is not the primary; the primary is ${info.primaryHostname() ?? 'unknown'}` });
    const mine = info.clusterId();
    if (replica.clusterId && mine && replica.clusterId !== mine) {
      log.warn({ replica: replica.hostname, cluster: replica.clusterId }, 'refused a replica of another cluster');
      return reply.status(409).send({ error: `the replica belongs to cluster ${replica.clusterId}; this primary's cluster is ${mine}` });
    }
    reply.hijack();
    await streamer.serve(reply.raw, replica);
  };
  app.post('/stream', stream);
  app.get('/stream', stream);

  // Made at the first scrape: every value is read then anyway, and prom-client need not load before.
  let metrics: ReturnType<typeof createMetrics> | undefined;
  app.get('/metrics', async (_req, reply) => {
    metrics ??= createMetrics({
      store,
      isPrimary: info.isPrimary,
      subscriberCount: () => info.streamer()?.subscriberCount ?? 0,
      lagMs: info.lagMs,
      lifecycle: info.lifecycle,
      backup: info.backup,
    });
    const registry = await metrics;
    return reply.type(registry.contentType).send(await registry.metrics());
  });

  // A replica asks to become primary; it asks the primary for a handoff.
  app.post('/promote', async () => {
    await info.lifecycle.promote();
    return { ok: true, isPrimary: info.isPrimary() };
  });

  // The primary hands its lease to the connected replica with this node id.
  app.post('/handoff', async (req) => {
    const nodeId = (req.body as { nodeId?: unknown } | undefined)?.nodeId ?? (req.query as { nodeId?: unknown }).nodeId;
    if (typeof nodeId !== 'string' || !/^[0-9a-f]{16}$/.test(nodeId)) throw badRequest('handoff needs {"nodeId": "<16 hex digits>"} of a connected replica');
    const to = await info.lifecycle.handoff(nodeId);
    return { ok: true, to };
  });

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
