// The node's HTTP API (fastify): /info, /export, /import. Errors are JSON
// {error: "..."} with a clear message and a fitting status.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { parseHostPort } from '../config/index.js';
import { formatPosition } from '../txlog/checksum.js';
import { exportDatabase, importDatabase, ImportError } from '../store/transfer.js';

export interface NodeInfo {
  hostname: string;
  advertiseUrl: string;
  candidate: boolean;
  isPrimary: () => boolean;
  primaryHostname: () => string | undefined;
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
