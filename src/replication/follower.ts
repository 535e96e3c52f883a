// A replica's side of replication: connect to the primary's /stream with
// this node's positions, verify each record and apply it (DB.applyTransactions,
// DB.applySnapshot), and on any failure drop the stream, say why in one
// line and connect again after lease.reconnect-delay. A database left in
// doubt asks for a snapshot on the next connection. `.primary` names the
// primary while a stream is up; `.lag` says how far behind it is.
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { Agent, request } from 'undici';
import type { FileControl } from '../fuse/index.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { ApplyError, type ReceivedTransaction } from '../store/types.js';
import { AlignedPool, DirectFileWriter } from '../store/direct-file.js';
import { formatPosition } from '../txlog/checksum.js';
import { decodeHandoff } from './handoff.js';
import { recordTypeName, decodeSnapshotChunk, decodeWalSegmentFiles, RecordType, SnapshotAssembler, StreamError, type StreamRecord } from './records.js';
import { RecordReader } from './record-reader.js';
import { decodeHello } from './hello.js';

export interface FollowerOptions {
  store: Store;
  files: FileControl;
  log: Logger;
  /** The primary's advertise URL. */
  primaryUrl: string;
  hostname: string;
  /** This node's id (16 hex digits): the primary finds this stream by it for a handoff. */
  nodeId: string;
  /** This node's cluster id, if it has one: a primary of another cluster refuses the stream. */
  clusterId: () => string | undefined;
  reconnectDelay: number;
  /** Where snapshot images are assembled before they replace a database. */
  scratchDir: string;
  /** A stream silent for this long (no heartbeat) is considered dead. */
  silenceTimeout?: number;
}

/** A snapshot being received: its pages go to a file beside the mount first. */
interface IncomingSnapshot {
  name: string;
  file: string;
  /** Writes each chunk on libuv's pool while the next one arrives and is checked. */
  writer: DirectFileWriter;
  assembler: SnapshotAssembler;
  first: StreamRecord;
  started: number;
  bytes: number;
}

export class Follower extends EventEmitter {
  private stopped = false;
  private abort?: AbortController;
  private snapshot?: IncomingSnapshot;
  /** Where raw snapshot chunks are assembled, so their pages are written without another copy. */
  private readonly snapshotMemory = new AlignedPool();
  private primaryHostname?: string;
  private lastHeard = 0; // local time the last record arrived
  private transit = 0; // its delay from the primary's clock (ms)
  private heartbeatMs = 1000;
  private lagTimer?: NodeJS.Timeout;
  private readonly dispatcher: Agent;
  /** Counts, for tests and /metrics. */
  readonly stats = { connects: 0, snapshots: 0, transactions: 0, errors: 0, discarded: 0 };
  private running?: Promise<void>;
  private wakePause?: () => void;

  constructor(private readonly opts: FollowerOptions) {
    super();
    const silence = opts.silenceTimeout ?? 5000;
    this.dispatcher = new Agent({ headersTimeout: silence * 2, bodyTimeout: silence, connect: { timeout: silence } });
  }

  /** The primary's hostname while a stream is up. */
  get primary(): string | undefined {
    return this.primaryHostname;
  }

  /** The primary's advertise URL this follower streams from. */
  get primaryUrl(): string {
    return this.opts.primaryUrl;
  }

  /** Replication lag in ms: the last record's delay, or the silence beyond one heartbeat. */
  get lag(): number {
    if (!this.lastHeard) return 0;
    const silence = Date.now() - this.lastHeard - this.heartbeatMs;
    return Math.max(0, Math.round(Math.max(this.transit, silence)));
  }

  start(): void {
    this.opts.files.setVirtualFile('.lag', '0\n');
    this.lagTimer = setInterval(() => this.publishLag(), 1000);
    this.lagTimer.unref();
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wakePause?.();
    if (this.lagTimer) clearInterval(this.lagTimer);
    await this.running;
    await this.dispatcher.close().catch(() => undefined);
    this.setPrimary(undefined);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.session();
      } catch (err) {
        if (this.stopped) break;
        this.stats.errors++;
        const message = (err as Error).message;
        this.opts.log.warn({ primary: this.opts.primaryUrl, reconnectMs: this.opts.reconnectDelay }, `replication stream ended: ${message}`);
        this.emit('streamError', err);
      } finally {
        this.discardSnapshot();
        this.setPrimary(undefined);
      }
      if (!this.stopped) await this.pause(this.opts.reconnectDelay);
    }
  }

  /** Waits before reconnecting; stop() cuts it short. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakePause = done;
    });
  }

  private async session(): Promise<void> {
    const { store } = this.opts;
    for (const db of store.dbs.values()) await db.settle();
    const positions = Object.fromEntries([...store.dbs.values()].map((db) => [db.name, formatPosition(db.streamPosition.txid, db.streamPosition.checksum)]));
    // A node that was primary says what it committed, so the primary can count what never reached it.
    const history: Record<string, string[]> = {};
    for (const db of store.dbs.values()) {
      const own = db.doubt ? undefined : db.ownHistory();
      if (own) history[db.name] = own.map((p) => formatPosition(p.txid, p.checksum));
    }
    this.abort = new AbortController();
    this.stats.connects++;
    const res = await request(new URL('/stream', this.opts.primaryUrl), {
      method: 'POST',
      body: JSON.stringify({ hostname: this.opts.hostname, nodeId: this.opts.nodeId, clusterId: this.opts.clusterId(), positions, history }),
      headers: { 'content-type': 'application/json' },
      signal: this.abort.signal,
      dispatcher: this.dispatcher,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      let message = text.slice(0, 200);
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? message;
      } catch {
        // not JSON: the text as it is
      }
      throw new Error(`primary ${this.opts.primaryUrl} answered ${res.statusCode}: ${message}`);
    }
    const reader = new RecordReader({ snapshotMemory: this.snapshotMemory.take });
    for await (const chunk of res.body) {
      reader.push(chunk as Buffer);
      const records: StreamRecord[] = [];
      for (let record = reader.next(); record; record = reader.next()) records.push(record);
      for (let i = 0; i < records.length; i++) {
        // Segments of one database that arrived together apply under one lock hold.
        let j = i + 1;
        if (records[i]!.type === RecordType.WalSegment && !this.snapshot) {
          while (j < records.length && records[j]!.type === RecordType.WalSegment && records[j]!.name === records[i]!.name) j++;
        }
        if (j > i + 1) await this.applySegments(records.slice(i, j));
        else await this.handle(records[i]!);
        i = j - 1;
      }
    }
    reader.end();
    throw new Error('the primary closed the stream');
  }

  private noteHeard(r: StreamRecord): void {
    this.lastHeard = Date.now();
    this.transit = Math.max(0, this.lastHeard - r.timestamp);
  }

  private async handle(r: StreamRecord): Promise<void> {
    this.noteHeard(r);
    if (this.snapshot && r.type !== RecordType.Snapshot) throw new StreamError(`a ${recordTypeName(r.type)} record arrived in the middle of the snapshot of ${this.snapshot.name}`);
    switch (r.type) {
      case RecordType.Hello: {
        const hello = decodeHello(r);
        this.heartbeatMs = hello.heartbeatMs ?? 1000;
        this.setPrimary(hello.hostname);
        this.opts.log.info({ primary: hello.hostname, url: this.opts.primaryUrl }, 'connected to the primary');
        for (const [db, count] of Object.entries(hello.discarded ?? {})) {
          this.stats.discarded += count;
          this.opts.log.warn({ db, count }, `${count} transaction(s) this node committed as primary never reached the new primary; they are discarded`);
          this.emit('discarded', count);
        }
        return;
      }
      case RecordType.WalSegment:
        return this.applySegment(r);
      case RecordType.Snapshot:
        return this.receiveSnapshotChunk(r);
      case RecordType.Drop:
        if (this.opts.store.dbs.has(r.name)) {
          await this.opts.store.dropReplicaDatabase(r.name);
          this.opts.log.info({ db: r.name }, 'database deleted on the primary; deleted here');
        }
        return;
      case RecordType.Ready:
        this.opts.log.info({ databases: this.opts.store.dbs.size }, 'caught up with the primary');
        this.emit('ready');
        return;
      case RecordType.Heartbeat:
        this.publishLag();
        return;
      case RecordType.Handoff: {
        const handoff = decodeHandoff(r);
        if (handoff.nodeId !== undefined && handoff.nodeId !== this.opts.nodeId) throw new StreamError(`HANDOFF for node ${handoff.nodeId}, this node is ${this.opts.nodeId}`);
        this.emit('handoff', handoff);
        return;
      }
    }
  }

  private applySegment(r: StreamRecord): Promise<void> {
    return this.applySegments([r]);
  }

  /** WAL_SEGMENT records of one database, in order: decoded and verified, then applied together. */
  private async applySegments(records: StreamRecord[]): Promise<void> {
    const items: ReceivedTransaction[] = [];
    for (const r of records) {
      this.noteHeard(r);
      items.push(...decodeWalSegmentFiles(r));
    }
    const name = records[0]!.name;
    const first = items[0]?.tx;
    const db = this.opts.store.dbs.get(name) ?? (first?.minTxid === 1 ? this.opts.store.replicaDatabase(name) : undefined);
    if (!db) throw new ApplyError(`database ${name}: transaction ${first?.minTxid} for a database this replica does not have`);
    await db.applyTransactions(items);
    this.stats.transactions += items.length;
    this.publishLag();
  }

  private async receiveSnapshotChunk(r: StreamRecord): Promise<void> {
    const pages = decodeSnapshotChunk(r);
    let s = this.snapshot;
    if (!s) {
      fs.mkdirSync(this.opts.scratchDir, { recursive: true });
      const file = path.join(this.opts.scratchDir, `snapshot-${process.pid}-${Date.now()}.db`);
      // A database this replica does not have yet: its image is moved into place and read through the mount
      // later, so it need not pass through the page cache now. An existing one is copied from the image at once.
      const bypassCache = !fs.existsSync(path.join(this.opts.store.dbDir, r.name));
      s = { name: r.name, file, writer: DirectFileWriter.create(file, bypassCache, this.snapshotMemory), assembler: new SnapshotAssembler(r), first: r, started: Date.now(), bytes: 0 };
      this.snapshot = s;
    }
    s.assembler.add(r, pages);
    await s.writer.write(pages, (r.firstPgno - 1) * r.pageSize);
    s.bytes += pages.length;
    if (!s.assembler.done) return;
    s.assembler.finish();
    await s.writer.finish(s.first.commitSize * s.first.pageSize); // a lock page at the end is a hole
    const at = { txid: s.first.maxTxid, checksum: s.first.postApplyChecksum, pageSize: s.first.pageSize, commitSize: s.first.commitSize, timestamp: s.first.timestamp };
    const db = this.opts.store.replicaDatabase(s.name);
    await db.applySnapshot(s.file, at, s.assembler.checksums);
    this.stats.snapshots++;
    const ms = Date.now() - s.started;
    this.opts.log.info({ db: s.name, txid: at.txid, bytes: s.bytes, ms }, 'applied a snapshot from the primary');
    this.discardSnapshot();
    this.publishLag();
  }

  private discardSnapshot(): void {
    const s = this.snapshot;
    if (!s) return;
    this.snapshot = undefined;
    s.writer.abandon();
    this.snapshotMemory.clear();
    fs.rmSync(s.file, { force: true });
  }

  private setPrimary(hostname: string | undefined): void {
    this.primaryHostname = hostname;
    this.opts.files.setVirtualFile('.primary', hostname === undefined ? null : hostname + '\n');
  }

  private publishLag(): void {
    this.opts.files.setVirtualFile('.lag', `${this.lag}\n`);
  }
}


