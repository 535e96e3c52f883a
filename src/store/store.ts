// Store: the set of databases in the mount, and the routing of FUSE events
// to the DB that owns the file. Decides which names are databases.
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { ErrnoName, FileControl, FuseEvent } from '../fuse/index.js';
import type { Logger } from '../log.js';
import { DB } from './db.js';
import type { DbContext, Role } from './types.js';
import { classifyName } from './family.js';
import { recoverDatabase } from './recovery.js';
import { LogWriteError } from './txlog-dir.js';

export interface StoreOptions {
  dataDir: string;
  files: FileControl;
  log: Logger;
  compress: boolean;
  strictVerify: boolean;
  /** fuse.cache-journals (default false). */
  cacheJournals?: boolean;
  retention: number;
  retentionMonitorInterval: number;
  nodeId: bigint;
  /** The role the node starts in; setRole() changes it. */
  role: Role;
  /**
   * How startup recovery treats files that do not match their log
   * (recovery.ts): a candidate never writes over its files (its database
   * may hold commits only it has); a pure replica may. Default: `role`.
   */
  recoverAs?: Role;
}

/** Commit notices recorded together at most (see deferWalCommit). */
const MAX_DEFERRED_NOTICES = 64;

export class Store extends EventEmitter {
  readonly dbs = new Map<string, DB>();
  readonly dbDir: string;
  readonly dataDir: string;
  private readonly ctx: DbContext;
  private retentionTimer?: NodeJS.Timeout;
  role: Role;
  /** This node's id as 16 hex digits. */
  readonly nodeIdHex: string;

  constructor(private readonly opts: StoreOptions) {
    super();
    this.role = opts.role;
    this.nodeIdHex = opts.nodeId.toString(16).padStart(16, '0');
    this.dataDir = opts.dataDir;
    this.dbDir = path.join(opts.dataDir, 'dbs');
    const logRoot = path.join(opts.dataDir, 'txlog');
    fs.mkdirSync(this.dbDir, { recursive: true });
    fs.mkdirSync(logRoot, { recursive: true });
    this.ctx = { dbDir: this.dbDir, logRoot, files: opts.files, log: opts.log, compress: opts.compress, strictVerify: opts.strictVerify, cacheJournals: opts.cacheJournals, nodeId: opts.nodeId, segmentMaxAge: opts.retentionMonitorInterval };
  }

  /** Recovers every database found in the data directory and flags its files. Before the mount serves. */
  open(): void {
    for (const name of fs.readdirSync(this.dbDir).sort()) {
      const kind = classifyName(name);
      if (kind.kind !== 'database' || !fs.statSync(path.join(this.dbDir, name)).isFile()) continue;
      this.addDatabase(name, true);
    }
    this.retentionTimer = setInterval(() => this.enforceRetention(), this.opts.retentionMonitorInterval);
    this.retentionTimer.unref();
  }

  close(): void {
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    for (const db of this.dbs.values()) db.close();
  }

  /** Where the mount serves: a replica writes its databases through it. */
  setMountDir(dir: string): void {
    this.ctx.mountDir = dir;
  }

  /**
   * Changes the node's role. A new primary records any database in doubt
   * as it is; a new replica leaves them for the primary's snapshots.
   */
  setRole(role: Role): void {
    this.role = role;
    for (const db of this.dbs.values()) {
      db.attach(role);
      if (role === 'primary') db.repair();
    }
    this.emit('role', role);
  }

  /**
   * Stops writes the gentle way (clean stop, handoff): new databases are
   * refused at once, then each database turns read-only between two
   * transactions (DB.stopWrites). setRole('replica') is the abrupt way.
   */
  async stopWrites(timeoutMs = 1000): Promise<void> {
    this.role = 'replica';
    for (const db of [...this.dbs.values()]) {
      if (!(await db.stopWrites(timeoutMs))) this.opts.log.warn({ db: db.name, waitedMs: timeoutMs }, 'a write transaction was still open when writes stopped; it will fail');
    }
    this.emit('role', 'replica');
  }

  /** A database the primary has and this replica does not yet (created empty; records fill it). */
  replicaDatabase(name: string): DB {
    return this.dbs.get(name) ?? this.addDatabase(name, false);
  }

  /** The primary deleted a database: so does this replica. */
  async dropReplicaDatabase(name: string): Promise<void> {
    const db = this.dbs.get(name);
    if (!db) return;
    await db.removeFiles();
    this.dropDatabase(db);
  }

  private addDatabase(name: string, recover: boolean): DB {
    const db = new DB(name, this.ctx);
    db.role = this.role;
    try {
      if (recover) recoverDatabase(db, this.opts.log, this.opts.recoverAs ?? this.role);
    } catch (err) {
      if (!(err instanceof LogWriteError)) throw err;
      db.close();
      throw new LogWriteError(`database ${name}: ${err.message}; its commits are safe in its files: free space under ${this.dataDir} and start again`);
    }
    db.attach(this.role);
    db.on('commit', (tx) => this.emit('commit', db, tx));
    this.dbs.set(name, db);
    this.opts.log.info({ db: name, position: `${db.position.txid}` }, recover ? 'database opened' : 'database created');
    return db;
  }

  private dropDatabase(db: DB): void {
    db.detach();
    this.dbs.delete(db.name);
    fs.rmSync(db.log.dir, { recursive: true, force: true });
    this.opts.log.info({ db: db.name }, 'database deleted');
    this.emit('drop', db);
  }

  /** The backup's say in retention: the lowest TXID a database's log must keep, if any. */
  retentionFloor?: (db: string) => number | undefined;

  enforceRetention(): void {
    const before = Date.now() - this.opts.retention;
    for (const db of this.dbs.values()) db.log.enforceRetention(before, this.retentionFloor?.(db.name));
  }

  /** WAL commit notices not yet recorded: the furthest commit end per database. */
  private readonly deferredWalCommits = new Map<DB, number>();
  private deferredCount = 0;

  /**
   * A commit notice with more notices queued behind it waits for them, so a
   * burst of commits costs one read of the WAL (a JavaScript thread that
   * falls behind catches up in batches); at most MAX_DEFERRED_NOTICES, and
   * any other event (a settle included) records them first.
   */
  private deferWalCommit(db: DB, end: number): boolean {
    this.deferredWalCommits.set(db, Math.max(this.deferredWalCommits.get(db) ?? 0, end));
    return ++this.deferredCount < MAX_DEFERRED_NOTICES && this.opts.files.pendingNotices() > 1;
  }

  private recordDeferredWalCommits(): void {
    if (this.deferredCount === 0) return;
    const batch = [...this.deferredWalCommits];
    this.deferredWalCommits.clear();
    this.deferredCount = 0;
    for (const [db, end] of batch) if (this.dbs.get(db.name) === db) db.walCommit(end, false);
  }

  /** The FUSE event handler: the commit path runs through here. */
  handle = (ev: FuseEvent): void | ErrnoName => {
    const kind = classifyName(ev.name);
    if (ev.type !== 'walCommit' || ev.waiting) this.recordDeferredWalCommits();
    switch (ev.type) {
      case 'settle':
        return undefined; // the notices before it are recorded (above)
      case 'walCommit': {
        const db = kind.kind === 'companion' ? this.dbs.get(kind.db) : undefined;
        const end = ev.offset + ev.length;
        if (!db) return undefined;
        if (ev.waiting) return db.walCommit(end, true);
        if (!this.deferWalCommit(db, end)) this.recordDeferredWalCommits();
        return undefined;
      }
      case 'journalInvalidated':
        return kind.kind === 'companion' ? this.dbs.get(kind.db)?.journalInvalidated() : undefined;
      case 'fsync':
        if (kind.kind === 'database') this.dbs.get(kind.db)?.databaseSynced();
        return undefined;
      case 'create':
        if (kind.kind === 'reserved' || kind.kind === 'position') return 'EACCES';
        if (kind.kind === 'database' && this.role === 'replica') return 'EROFS'; // databases come from the primary
        if (kind.kind === 'database' && !this.dbs.has(kind.db)) this.addDatabase(kind.db, false);
        if (kind.kind === 'companion' && kind.companion === '-wal') this.dbs.get(kind.db)?.walReset(); // a new WAL file
        return undefined;
      case 'truncate':
      case 'unlink':
        if (kind.kind === 'companion' && kind.companion === '-wal') this.dbs.get(kind.db)?.walReset();
        if (ev.type === 'unlink' && kind.kind === 'database') {
          const db = this.dbs.get(kind.db);
          if (db) this.dropDatabase(db);
        }
        return undefined;
      case 'rename':
        this.opts.log.warn({ from: ev.name, to: ev.newName }, 'a file was renamed in the mount; databases cannot be renamed');
        return undefined;
    }
  };
}
