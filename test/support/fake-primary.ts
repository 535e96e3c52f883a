// A scripted stand-in for a primary's /stream, for tests that feed crafted
// streams to a real replica (`litefs mount` with candidate: false).
//
// - SourceDb: a real SQLite database (better-sqlite3, in a temp dir) whose
//   every committed change becomes a transaction file (encodeTransaction),
//   so the records the fake sends carry real SQLite pages and real checksums.
// - FakePrimary: a node:http server on 127.0.0.1 answering POST and GET
//   /stream. Each new connection takes the next scripted session from a
//   queue (or, when the queue is empty, asks `respond`): bytes to write, then
//   hold the connection open (HEARTBEAT every 200 ms), hold it silent, end
//   it, or destroy it. It records every request's positions, and the test
//   can write more bytes into, end or destroy the connection that is open.
// - rawRecord: a record written without the codec's rules (any header
//   values, a correct or deliberately wrong record checksum), for the inputs
//   encodeRecord refuses to produce.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import { heartbeatRecord, readyRecord, RECORD_HEADER_SIZE, RECORD_MAGIC, snapshotChunkRecord, walSegmentRecord } from '../../src/replication/records.js';
import { helloRecord, type HelloInfo } from '../../src/replication/hello.js';
import { crc64, databaseChecksum, formatPosition } from '../../src/txlog/checksum.js';
import { encodeTransaction, type TransactionFile } from '../../src/txlog/txfile.js';

// ---- a real SQLite database as a source of transactions -------------------

/** One committed change of a SourceDb: the decoded transaction, its file bytes, and the database image after it. */
export interface SourceTx {
  tx: TransactionFile;
  bytes: Buffer;
  image: Buffer;
}

function pageSizeOf(image: Buffer): number {
  const raw = image.readUInt16BE(16);
  return raw === 1 ? 65536 : raw;
}

function pagesOf(image: Buffer, pageSize: number): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (let off = 0, pgno = 1; off < image.length; off += pageSize, pgno++) out.push([pgno, image.subarray(off, off + pageSize)]);
  return out;
}

/** The database checksum of a whole image (page by page: the reference the production code's sliced passes are checked against). */
export function imageChecksum(image: Buffer, pageSize = pageSizeOf(image)): bigint {
  return databaseChecksum(pagesOf(image, pageSize), pageSize);
}

export function sha256(buf: Buffer): string {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

/** The segment file description walSegmentRecord takes, from a transaction and its bytes. */
export function segmentFile(tx: TransactionFile, bytes: Buffer) {
  return { bytes, minTxid: tx.minTxid, maxTxid: tx.maxTxid, preApplyChecksum: tx.preApplyChecksum, postApplyChecksum: tx.postApplyChecksum, pageSize: tx.pageSize, commitSize: tx.commitSize };
}

/**
 * A SQLite database in rollback (delete) or WAL journal mode, written with
 * better-sqlite3. After each exec() the file is read back whole (in WAL mode
 * after a TRUNCATE checkpoint, so the file is the database) and the pages
 * that changed become the next transaction, TXID 1 holding every page.
 */
export class SourceDb {
  readonly file: string;
  readonly history: SourceTx[] = [];
  private readonly conn: Database.Database;

  constructor(dir: string, readonly name: string, readonly mode: 'delete' | 'wal') {
    this.file = path.join(dir, name);
    this.conn = new Database(this.file);
    this.conn.pragma(`journal_mode=${mode}`);
  }

  get txid(): number {
    return this.history.length;
  }

  get last(): SourceTx {
    const last = this.history[this.history.length - 1];
    if (!last) throw new Error(`${this.name}: no transaction yet`);
    return last;
  }

  get image(): Buffer {
    return this.last.image;
  }

  get checksum(): bigint {
    return this.last.tx.postApplyChecksum;
  }

  get position(): string {
    return formatPosition(this.txid, this.checksum);
  }

  get sha256(): string {
    return sha256(this.image);
  }

  /** Runs SQL (one or more statements, committed) and records the change as the next transaction. */
  exec(sql: string): SourceTx {
    this.conn.exec(sql);
    if (this.mode === 'wal') this.conn.pragma('wal_checkpoint(TRUNCATE)');
    const image = fs.readFileSync(this.file);
    const pageSize = pageSizeOf(image);
    const commitSize = image.length / pageSize;
    const before = this.history.length ? this.image : Buffer.alloc(0);
    const pages = pagesOf(image, pageSize)
      .filter(([pgno, data]) => this.history.length === 0 || !before.subarray((pgno - 1) * pageSize, pgno * pageSize).equals(data))
      .map(([pgno, data]) => ({ pgno, data: Buffer.from(data) }));
    const tx: TransactionFile = {
      pageSize, commitSize, minTxid: this.txid + 1, maxTxid: this.txid + 1, timestamp: Date.now(),
      preApplyChecksum: this.history.length ? this.checksum : 0n, postApplyChecksum: imageChecksum(image),
      nodeId: 0x5eedn, walSalt1: 0, walSalt2: 0, walFrameEnd: 0, pages,
    };
    const entry = { tx, bytes: encodeTransaction(tx, { compress: false }), image };
    this.history.push(entry);
    return entry;
  }

  /** One WAL_SEGMENT record with the transactions after TXID `after` (default: just the last one). */
  segment(after = this.txid - 1): Buffer {
    const txs = this.history.slice(after);
    if (txs.length === 0) throw new Error(`${this.name}: nothing after TXID ${after}`);
    return walSegmentRecord(this.name, txs.map((t) => segmentFile(t.tx, t.bytes)));
  }

  /** SNAPSHOT records of the database as it is now, `chunkPages` pages a chunk. */
  snapshot(chunkPages = 2, compress = false): Buffer[] {
    const { image } = this;
    const pageSize = pageSizeOf(image);
    const at = { maxTxid: this.txid, postApplyChecksum: this.checksum, pageSize, commitSize: image.length / pageSize };
    const out: Buffer[] = [];
    for (let first = 1; first <= at.commitSize; first += chunkPages) {
      const end = Math.min(at.commitSize, first + chunkPages - 1);
      out.push(snapshotChunkRecord(this.name, at, first, image.subarray((first - 1) * pageSize, end * pageSize), end === at.commitSize, compress));
    }
    return out;
  }

  /** The records that bring a replica at `position` (undefined: it has none) up to date, as a primary would send them. */
  catchUp(position: string | undefined): Buffer[] {
    if (position === this.position) return [];
    const at = this.history.findIndex((t) => formatPosition(t.tx.maxTxid, t.tx.postApplyChecksum) === position);
    return at >= 0 ? [this.segment(at + 1)] : this.snapshot();
  }

  /** One value from a query on the source database. */
  scalar(sql: string): unknown {
    return this.conn.prepare(sql).pluck().get();
  }

  close(): void {
    this.conn.close();
  }
}

// ---- records outside the codec's rules -----------------------------------

export interface RawHeader {
  magic?: Buffer;
  type: number;
  flags?: number;
  /** Defaults to the name's byte length. */
  nameLength?: number;
  pageSize?: number;
  commitSize?: number;
  minTxid?: bigint;
  maxTxid?: bigint;
  preApplyChecksum?: bigint;
  postApplyChecksum?: bigint;
  timestamp?: bigint;
  firstPgno?: number;
  pageCount?: number;
  /** Defaults to the payload's length. */
  payloadLength?: number;
  reserved?: number;
  /** Defaults to the correct record checksum. */
  checksum?: bigint;
}

/** A record written byte by byte as docs/protocol.md lays it out, with no rule checked. */
export function rawRecord(h: RawHeader, name = '', payload: Buffer = Buffer.alloc(0)): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const out = Buffer.alloc(RECORD_HEADER_SIZE + nameBytes.length + payload.length);
  (h.magic ?? RECORD_MAGIC).copy(out, 0);
  out.writeUInt8(h.type, 4);
  out.writeUInt8(h.flags ?? 0, 5);
  out.writeUInt16BE(h.nameLength ?? nameBytes.length, 6);
  out.writeUInt32BE(h.pageSize ?? 0, 8);
  out.writeUInt32BE(h.commitSize ?? 0, 12);
  out.writeBigUInt64BE(h.minTxid ?? 0n, 16);
  out.writeBigUInt64BE(h.maxTxid ?? 0n, 24);
  out.writeBigUInt64BE(h.preApplyChecksum ?? 0n, 32);
  out.writeBigUInt64BE(h.postApplyChecksum ?? 0n, 40);
  out.writeBigUInt64BE(h.timestamp ?? BigInt(Date.now()), 48);
  out.writeUInt32BE(h.firstPgno ?? 0, 56);
  out.writeUInt32BE(h.pageCount ?? 0, 60);
  out.writeUInt32BE(h.payloadLength ?? payload.length, 64);
  out.writeUInt32BE(h.reserved ?? 0, 68);
  nameBytes.copy(out, RECORD_HEADER_SIZE);
  payload.copy(out, RECORD_HEADER_SIZE + nameBytes.length);
  out.writeBigUInt64BE(h.checksum ?? recordChecksum(out), 72);
  return out;
}

/** crc64 of header bytes 0..71 ‖ name ‖ payload. */
export function recordChecksum(record: Buffer): bigint {
  return crc64(record.subarray(RECORD_HEADER_SIZE), crc64(record.subarray(0, 72)));
}

/** The same record with its checksum field recomputed (after the test changed its bytes). */
export function resealed(record: Buffer): Buffer {
  const out = Buffer.from(record);
  out.writeBigUInt64BE(recordChecksum(out), 72);
  return out;
}

// ---- the fake primary -----------------------------------------------------

export interface StreamRequest {
  /** Local time it arrived, ms. */
  at: number;
  method: string;
  hostname: string;
  positions: Record<string, string>;
}

/** What one connection gets: a status, bytes, then what happens to the connection. */
export interface Session {
  /** Default 200; anything else answers `{"error": ...}` JSON and ends. */
  status?: number;
  body?: Buffer[];
  /** hold: stay open, a HEARTBEAT every 200 ms; silent: stay open, send nothing; end: finish the response; destroy: cut the socket. Default hold. */
  then?: 'hold' | 'silent' | 'end' | 'destroy';
}

export type Script = Session | ((req: StreamRequest) => Session | Promise<Session>);

interface Connection {
  req: StreamRequest;
  res: http.ServerResponse;
  timer?: NodeJS.Timeout;
  closed: boolean;
}

export const FAKE_HOSTNAME = 'fake-primary';
export const HEARTBEAT_MS = 200;

export class FakePrimary {
  readonly requests: StreamRequest[] = [];
  private readonly queue: Script[] = [];
  private current?: Connection;
  private readonly connections = new Set<Connection>();
  /** Answers a connection when the queue is empty. Default: HELLO, READY, hold. */
  respond: Script = () => ({ body: [this.hello(), readyRecord()] });

  private constructor(private readonly server: http.Server, readonly url: string) {}

  static async start(): Promise<FakePrimary> {
    let fake!: FakePrimary;
    const server = http.createServer((req, res) => void fake.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    fake = new FakePrimary(server, `http://127.0.0.1:${port}`);
    return fake;
  }

  hello(info: Partial<HelloInfo> = {}): Buffer {
    return helloRecord({ version: 1, hostname: FAKE_HOSTNAME, advertiseUrl: this.url, heartbeatMs: HEARTBEAT_MS, ...info });
  }

  /** Scripts the next connections, in order. */
  enqueue(...scripts: Script[]): void {
    this.queue.push(...scripts);
  }

  /** Drops the scripts no connection has taken yet. */
  clearQueue(): void {
    this.queue.length = 0;
  }

  /** Resolves with request number n (1-based) once it has arrived. */
  async waitForRequest(n: number, timeoutMs = 5000): Promise<StreamRequest> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length < n) {
      if (Date.now() > deadline) throw new Error(`the fake primary saw ${this.requests.length} requests, waited for ${n}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.requests[n - 1]!;
  }

  /** Whether the latest connection is still open. */
  get connected(): boolean {
    return !!this.current && !this.current.closed;
  }

  /** Writes bytes into the latest connection (it must be open and holding). */
  send(...bufs: Buffer[]): void {
    const c = this.openConnection();
    for (const b of bufs) c.res.write(b);
  }

  /** Ends the latest connection's response cleanly (the stream's end, after whatever was sent). */
  end(): void {
    const c = this.openConnection();
    this.stopHeartbeats(c);
    c.res.end();
  }

  /** Cuts the latest connection's socket (after what was sent has left). */
  async destroy(): Promise<void> {
    const c = this.openConnection();
    this.stopHeartbeats(c);
    await new Promise((r) => setTimeout(r, 50));
    c.res.socket?.destroy();
  }

  async stop(): Promise<void> {
    for (const c of this.connections) this.stopHeartbeats(c);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private openConnection(): Connection {
    const c = this.current;
    if (!c || c.closed) throw new Error('the fake primary has no open connection');
    return c;
  }

  private stopHeartbeats(c: Connection): void {
    if (c.timer) clearInterval(c.timer);
    c.timer = undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    if (url.pathname !== '/stream' || (req.method !== 'POST' && req.method !== 'GET')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let request: StreamRequest;
    if (req.method === 'POST') {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { hostname?: string; positions?: Record<string, string> };
      request = { at: Date.now(), method: 'POST', hostname: body.hostname ?? '', positions: body.positions ?? {} };
    } else {
      const positions: Record<string, string> = {};
      for (const p of url.searchParams.getAll('pos')) {
        const i = p.lastIndexOf(':');
        positions[p.slice(0, i)] = p.slice(i + 1);
      }
      request = { at: Date.now(), method: 'GET', hostname: url.searchParams.get('hostname') ?? '', positions };
    }
    this.requests.push(request);
    const script = this.queue.shift() ?? this.respond;
    const session = typeof script === 'function' ? await script(request) : script;

    const c: Connection = { req: request, res, closed: false };
    this.connections.add(c);
    this.current = c;
    res.on('close', () => {
      c.closed = true;
      this.stopHeartbeats(c);
      this.connections.delete(c);
    });
    if ((session.status ?? 200) !== 200) {
      res.writeHead(session.status!, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'scripted failure' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-litefs-stream' });
    res.flushHeaders();
    for (const b of session.body ?? []) res.write(b);
    switch (session.then ?? 'hold') {
      case 'hold':
        c.timer = setInterval(() => {
          if (!c.closed) res.write(heartbeatRecord());
        }, HEARTBEAT_MS);
        return;
      case 'silent':
        return;
      case 'end':
        res.end();
        return;
      case 'destroy':
        // Let the bytes leave first, so the replica sees them cut, not missing.
        setTimeout(() => res.socket?.destroy(), 50);
        return;
    }
  }
}
