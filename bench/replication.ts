// bench/replication: a static primary with one replica attached, each a
// `litefs mount` process, against local disk, in one run:
//   1. single-row commits on the primary (WAL NORMAL/FULL, DELETE) vs local disk;
//   2. replication lag at a steady 1k tx/s: from a commit returning on the
//      primary to the replica's <db>-pos showing its TXID (polled by a worker
//      thread), and to a better-sqlite3 reader on the replica seeing the row;
//   3. point reads on the replica vs local disk;
//   4. snapshot bootstrap of a fresh replica from a BENCH_SNAPSHOT_MB (1024) MiB database.
// The machine is shared and noisy: ratios (measured in the same run) hold
// better than absolute numbers. Every process started here is stopped by its
// PID, and nothing is left mounted, also on error.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { Cluster, readPos, type ClusterNode } from '../test/support/cluster.js';
import { mountPoints } from '../src/fuse/mountpoint.js';
import { commitRate, fmt, timed, type Rate } from './measure.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const LAG_RATE = Number(process.env.BENCH_LAG_RATE ?? 1000);
const LAG_SECONDS = Number(process.env.BENCH_LAG_SECONDS ?? 5);
const READ_SECONDS = Number(process.env.BENCH_READ_SECONDS ?? 2);
const READ_ROWS = 100_000;
const SNAPSHOT_MB = Number(process.env.BENCH_SNAPSHOT_MB ?? 1024);
const SNAPSHOT_TIMEOUT_S = Number(process.env.BENCH_SNAPSHOT_TIMEOUT ?? Math.max(60, SNAPSHOT_MB * 0.3));
const SYNC_TIMEOUT_MS = 60_000;
/** The <db>-pos watcher's pause between looks in the lag test, in microseconds (0: a tight loop). */
const POS_PAUSE_US = Number(process.env.BENCH_POS_PAUSE_US ?? 100);
/** The paced reader's pause between queries in the lag test, in microseconds. */
const READER_PAUSE_US = Number(process.env.BENCH_READER_PAUSE_US ?? 100);
/** Which parts to run, e.g. BENCH_PHASES=2,4 (default all: 1 commits, 2 lag, 3 reads, 4 bootstrap). */
const PHASES = new Set((process.env.BENCH_PHASES ?? '1,2,3,4').split(',').map((p) => p.trim()));

/** Milliseconds on a clock every thread of this process shares. */
const now = (): number => performance.timeOrigin + performance.now();

// ---- worker threads: watch the replica, record when each TXID / row shows ----

interface WatchJob {
  kind: 'pos' | 'sql';
  /** Pause between looks, in microseconds (0: a tight loop). */
  pauseUs: number;
  /** The replica's `<db>-pos` (pos) or the database (sql). */
  file: string;
  /** TXID (pos) or row id (sql) already visible: index 0 of `seen` is base + 1. */
  base: number;
  seen: SharedArrayBuffer;
  control: SharedArrayBuffer; // [0]: stop flag
}

interface WatchResult {
  polls: number;
  errors: number;
  lastError?: string;
}

function watch(job: WatchJob): WatchResult {
  const seen = new Float64Array(job.seen);
  const control = new Int32Array(job.control);
  const pause = () => job.pauseUs > 0 && Atomics.wait(control, 0, 0, job.pauseUs / 1000);
  let last = job.base;
  let polls = 0;
  let errors = 0;
  let lastError: string | undefined;
  const mark = (upTo: number) => {
    if (upTo <= last) return;
    const t = now();
    for (let k = Math.max(last + 1, job.base + 1); k <= upTo; k++) {
      const i = k - job.base - 1;
      if (i < seen.length) seen[i] = t;
    }
    last = upTo;
  };
  if (job.kind === 'pos') {
    // A virtual file is served without the page cache: one pread is one fresh look.
    const fd = fs.openSync(job.file, 'r');
    const buf = Buffer.alloc(64);
    parentPort!.postMessage('ready');
    try {
      while (Atomics.load(control, 0) === 0) {
        polls++;
        const n = fs.readSync(fd, buf, 0, buf.length, 0);
        if (n >= 16) mark(parseInt(buf.toString('latin1', 0, 16), 16));
        pause();
      }
    } finally {
      fs.closeSync(fd);
    }
  } else {
    const db = new Database(job.file, { timeout: 5000, fileMustExist: true });
    const max = db.prepare('SELECT max(id) FROM lag').pluck();
    parentPort!.postMessage('ready');
    try {
      while (Atomics.load(control, 0) === 0) {
        polls++;
        try {
          mark((max.get() as number | null) ?? 0);
        } catch (err) {
          errors++;
          lastError = (err as Error).message;
        }
        pause();
      }
    } finally {
      db.close();
    }
  }
  return { polls, errors, lastError };
}

class Watcher {
  readonly seen: Float64Array;
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  private readonly worker: Worker;
  private readonly result: Promise<WatchResult>;

  private constructor(job: Omit<WatchJob, 'seen' | 'control'>, count: number) {
    const seen = new SharedArrayBuffer(count * 8);
    this.seen = new Float64Array(seen);
    this.worker = new Worker(new URL(import.meta.url), { workerData: { ...job, seen, control: this.control.buffer } satisfies WatchJob });
    this.result = new Promise((resolve, reject) => {
      this.worker.on('message', (m: unknown) => typeof m === 'object' && resolve(m as WatchResult));
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`watcher exited (${code}) before reporting`)));
    });
    this.result.catch(() => undefined);
  }

  static async start(job: Omit<WatchJob, 'seen' | 'control'>, count: number): Promise<Watcher> {
    const w = new Watcher(job, count);
    await new Promise<void>((resolve, reject) => {
      w.worker.on('message', (m: unknown) => m === 'ready' && resolve());
      w.worker.once('error', reject);
      w.worker.once('exit', (code) => reject(new Error(`watcher exited (${code}) before it was ready`)));
    });
    return w;
  }

  async stop(): Promise<WatchResult> {
    Atomics.store(this.control, 0, 1);
    Atomics.notify(this.control, 0);
    return this.result;
  }

  /** Ends the thread whatever it is doing (cleanup after an error). */
  async kill(): Promise<void> {
    Atomics.store(this.control, 0, 1);
    Atomics.notify(this.control, 0);
    await this.worker.terminate();
  }
}

// ---- the benchmark ----------------------------------------------------------

interface Summary {
  what: string;
  local?: string;
  litefs: string;
  ratio?: string;
  goal: string;
  met?: boolean;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Sleeps the thread (not the event loop's timers: this thread is busy) until `until` on now()'s clock. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepUntil(until: number): void {
  const ahead = until - now();
  if (ahead > 0.2) Atomics.wait(sleeper, 0, 0, ahead - 0.1);
  while (now() < until) {
    // the last ~0.1 ms: spin, Atomics.wait wakes late by tens of microseconds
  }
}

/** Waits until the replica's <db>-pos equals the primary's; returns ms waited. */
async function waitInSync(primary: ClusterNode, replica: ClusterNode, db: string, timeoutMs = SYNC_TIMEOUT_MS, pollMs = 1): Promise<number> {
  const start = now();
  for (;;) {
    const want = readPos(primary, db);
    const got = readPos(replica, db);
    if (want && got === want) return now() - start;
    if (now() - start > timeoutMs) {
      const tail = (replica.proc?.output ?? '').split('\n').slice(-15).join('\n');
      throw new Error(`${replica.name} did not catch up on ${db} within ${timeoutMs / 1000}s: primary at ${want || '(none)'}, replica at ${got || '(none)'}\n--- ${replica.name} log tail ---\n${tail}`);
    }
    await sleepMs(pollMs);
  }
}

function removeDatabase(dir: string, name: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(path.join(dir, name + suffix), { force: true });
}

function unmountLeftovers(mnts: string[]): void {
  for (const mnt of mnts) {
    if (!mountPoints().has(mnt)) continue;
    spawnSync('fusermount3', ['-u', mnt], { stdio: 'ignore' });
    if (mountPoints().has(mnt)) spawnSync('fusermount3', ['-uz', mnt], { stdio: 'ignore' });
    if (mountPoints().has(mnt)) console.error(`WARNING: ${mnt} is still mounted; unmount it with fusermount3 -u ${mnt}`);
  }
}

/** Stops a node by its PID (SIGTERM, then SIGKILL after 15 s: unmountLeftovers clears what a kill leaves). */
async function stopNode(cluster: Cluster, node: ClusterNode): Promise<void> {
  const child = node.proc?.child;
  if (!child) return;
  const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
  try {
    await cluster.stop(node);
  } finally {
    clearTimeout(kill);
  }
}

function logField(line: string, key: string): number | undefined {
  const m = new RegExp(`\\b${key}=(\\d+)`).exec(line);
  return m ? Number(m[1]) : undefined;
}

async function main(): Promise<void> {
  const localRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-bench-local-'));
  const cluster = await Cluster.create(2);
  const primary = cluster.primary;
  const [replica, fresh] = cluster.replicas as [ClusterNode, ClusterNode];
  const open: Database.Database[] = [];
  const watchers: Watcher[] = [];
  const summary: Summary[] = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const w of watchers) await w.kill().catch(() => undefined);
    for (const db of open) {
      try {
        if (db.open) db.close();
      } catch {
        // closing is best effort here
      }
    }
    for (const n of [...cluster.nodes].reverse()) await stopNode(cluster, n).catch((err: Error) => console.error(`stopping ${n.name}: ${err.message.split('\n')[0]}`));
    unmountLeftovers(cluster.nodes.map((n) => n.mnt));
    await cluster.destroy().catch((err: Error) => console.error(`removing ${cluster.root}: ${err.message}`));
    fs.rmSync(localRoot, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`\n${sig}: stopping the nodes`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    console.log('bench/replication: a static primary and replicas, each a `litefs mount` process on 127.0.0.1, against local disk (a temp dir).');
    console.log('The machine is shared and noisy (2 cores, other work running): ratios, measured in the same run, hold better than absolute numbers.');
    console.log(`nodes under ${cluster.root}, local disk files under ${localRoot}\n`);
    await cluster.start(primary);
    await cluster.start(replica);

    // ---- 1. commits ----
    if (PHASES.has('1')) {
      console.log(`1. single-row commits on the primary with ${replica.name} attached, best of 2 runs of ${SECONDS}s; ratio = litefs / local disk`);
      const cases = [
        { name: 'WAL synchronous=NORMAL', mode: 'wal', sync: 'normal', goal: 0.12 },
        { name: 'WAL synchronous=FULL', mode: 'wal', sync: 'full', goal: 0.5 },
        { name: 'DELETE synchronous=FULL', mode: 'delete', sync: 'full', goal: undefined },
      ];
      for (const c of cases) {
        let bestLocal: Rate | undefined;
        let bestMount: Rate | undefined;
        const catchUps: number[] = [];
        for (const tag of ['a', 'b']) {
          // Interleaved, so drift in machine load hits both sides.
          const name = `commit-${c.mode}-${c.sync}-${tag}.db`;
          const l = commitRate(path.join(localRoot, name), c.mode, c.sync, SECONDS);
          const m = commitRate(path.join(primary.mnt, name), c.mode, c.sync, SECONDS);
          catchUps.push(await waitInSync(primary, replica, name));
          if (!bestLocal || l.perSecond > bestLocal.perSecond) bestLocal = l;
          if (!bestMount || m.perSecond > bestMount.perSecond) bestMount = m;
        }
        const ratio = bestMount!.perSecond / bestLocal!.perSecond;
        const goal = c.goal === undefined ? '' : ` (goal >= ${c.goal}: ${ratio >= c.goal ? 'met' : 'NOT met'})`;
        console.log(
          `   ${c.name.padEnd(24)} local ${fmt(bestLocal!.perSecond).padStart(7)} tx/s | litefs ${fmt(bestMount!.perSecond).padStart(6)} tx/s | ratio ${ratio.toFixed(3)}${goal}` +
            ` | replica in sync ${catchUps.map((ms) => ms.toFixed(0)).join('/')} ms after each run`,
        );
        summary.push({
          what: `commits, ${c.name}`,
          local: `${fmt(bestLocal!.perSecond)} tx/s`,
          litefs: `${fmt(bestMount!.perSecond)} tx/s`,
          ratio: `${ratio.toFixed(3)}x`,
          goal: c.goal === undefined ? '(none)' : `>= ${c.goal}x`,
          met: c.goal === undefined ? undefined : ratio >= c.goal,
        });
      }
    }

    // ---- 2. lag at a steady rate ----
    if (PHASES.has('2')) {
      console.log(`\n2. replication lag at a steady ${fmt(LAG_RATE)} tx/s for ${LAG_SECONDS}s (WAL, synchronous=NORMAL, single-row inserts):`);
      const lagDb = 'lag.db';
      const lagFile = path.join(primary.mnt, lagDb);
      const w = new Database(lagFile);
      open.push(w);
      w.pragma('journal_mode=wal');
      w.pragma('synchronous=normal');
      w.exec('CREATE TABLE IF NOT EXISTS lag(id INTEGER PRIMARY KEY, v BLOB)');
      const insert = w.prepare('INSERT INTO lag(v) VALUES (?)');
      const value = Buffer.alloc(100, 7);
      const posFd = fs.openSync(path.join(primary.mnt, `${lagDb}-pos`), 'r');
      const posBuf = Buffer.alloc(64);
      const primaryTxid = (): number => {
        const n = fs.readSync(posFd, posBuf, 0, posBuf.length, 0);
        return n >= 16 ? parseInt(posBuf.toString('latin1', 0, 16), 16) : 0;
      };
      const count = Math.round(LAG_RATE * LAG_SECONDS);
      try {
        const variants = [
          { kind: 'pos', pauseUs: POS_PAUSE_US, label: `replica <db>-pos shows the TXID (${POS_PAUSE_US ? `${POS_PAUSE_US} us between looks` : 'tight poll'})` },
          { kind: 'sql', pauseUs: READER_PAUSE_US, label: `reader on the replica sees the row (paced: >= ${READER_PAUSE_US} us between queries)` },
          { kind: 'sql', pauseUs: 0, label: 'reader on the replica sees the row (tight loop)' },
        ] as const;
        const width = Math.max(...variants.map((v) => v.label.length));
        for (const { kind, pauseUs, label } of variants) {
          await waitInSync(primary, replica, lagDb);
          const baseTxid = primaryTxid();
          const baseRow = (w.prepare('SELECT coalesce(max(id), 0) FROM lag').pluck().get() as number) ?? 0;
          const base = kind === 'pos' ? baseTxid : baseRow;
          const file = kind === 'pos' ? path.join(replica.mnt, `${lagDb}-pos`) : path.join(replica.mnt, lagDb);
          const watcher = await Watcher.start({ kind, file, base, pauseUs }, count + 16);
          watchers.push(watcher);
          const committed = new Float64Array(count + 16);
          const commitMs: number[] = [];
          let behind = 0;
          const t0 = now() + 5;
          for (let i = 0; i < count; i++) {
            const due = t0 + (i * 1000) / LAG_RATE;
            if (now() > due + 1) behind++;
            sleepUntil(due);
            const before = now();
            const row = Number(insert.run(value).lastInsertRowid);
            const after = now();
            commitMs.push(after - before);
            // WAL commits are one TXID each (checked below): reading the primary's <db>-pos here would make its JavaScript thread answer after every commit, which apps do not do.
            const key = kind === 'pos' ? baseTxid + i + 1 : row;
            const idx = key - base - 1;
            if (idx >= 0 && idx < committed.length) committed[idx] = after;
          }
          const elapsed = (now() - t0) / 1000;
          if (primaryTxid() !== baseTxid + count) throw new Error(`lag: ${count} commits took the primary from TXID ${baseTxid} to ${primaryTxid()} (WAL commits should be one TXID each)`);
          const drain = await waitInSync(primary, replica, lagDb);
          // The watcher must also see the last commit; give it a moment.
          for (const deadline = now() + 5000; watcher.seen[count - 1] === 0 && now() < deadline; ) await sleepMs(1);
          const result = await watcher.stop();
          watchers.splice(watchers.indexOf(watcher), 1);
          const lags: number[] = [];
          let missing = 0;
          for (let i = 0; i < count; i++) {
            if (committed[i] === 0) continue;
            if (watcher.seen[i] === 0) missing++;
            else lags.push(watcher.seen[i]! - committed[i]!);
          }
          lags.sort((a, b) => a - b);
          commitMs.sort((a, b) => a - b);
          const recorded = committed.subarray(0, count).filter((t) => t !== 0).length;
          if (recorded !== count) throw new Error(`lag (${kind}): ${count - recorded} commits were not one TXID each (WAL commits should be)`);
          if (missing && kind === 'pos') throw new Error(`lag: the replica's <db>-pos never showed ${missing} of ${count} commits`);
          if (lags.length === 0) throw new Error(`lag (${label}): saw none of ${count} commits (${result.errors} read errors${result.lastError ? `, last: ${result.lastError}` : ''})`);
          const [p50, p99, max] = [percentile(lags, 50), percentile(lags, 99), lags[lags.length - 1]!];
          console.log(
            `   ${label.padEnd(width)}: p50 ${p50.toFixed(2)} ms | p99 ${p99.toFixed(2)} ms | max ${max.toFixed(2)} ms | min ${lags[0]!.toFixed(2)} ms` +
              ` (${fmt(count)} commits in ${elapsed.toFixed(2)}s = ${fmt(count / elapsed)} tx/s, ${behind} started >1 ms late;` +
              ` commit p50 ${percentile(commitMs, 50).toFixed(2)} ms p99 ${percentile(commitMs, 99).toFixed(2)} ms;` +
              ` ${fmt(result.polls / elapsed)} looks/s${result.errors ? `, ${result.errors} read errors (last: ${result.lastError})` : ''};` +
              ` <db>-pos in sync ${drain.toFixed(0)} ms after the last commit${missing ? `; ${missing} commits NOT SEEN 5 s later` : ''})`,
          );
          if (kind === 'pos') {
            summary.push({ what: `lag p50 at ${fmt(LAG_RATE)} tx/s (<db>-pos)`, litefs: `${p50.toFixed(2)} ms`, goal: '(none)' });
            summary.push({ what: `lag p99 at ${fmt(LAG_RATE)} tx/s (<db>-pos)`, litefs: `${p99.toFixed(2)} ms`, goal: '<= 5 ms', met: p99 <= 5 });
            summary.push({ what: `lag max at ${fmt(LAG_RATE)} tx/s (<db>-pos)`, litefs: `${max.toFixed(2)} ms`, goal: '(none)' });
          } else {
            const what = pauseUs ? `lag p50/p99, paced reader (>= ${pauseUs} us pauses)` : 'lag p50/p99, reader (tight loop)';
            summary.push({ what, litefs: `${p50.toFixed(2)} / ${p99.toFixed(2)} ms${missing ? ` (${missing} unseen)` : ''}`, goal: '(p99 <= 5 ms)', met: !missing && p99 <= 5 });
          }
        }
      } finally {
        fs.closeSync(posFd);
      }
      w.close();
    }

    // ---- 3. point reads on the replica ----
    if (PHASES.has('3')) {
      console.log(`\n3. point reads (${fmt(READ_ROWS)} rows of 100 bytes, WAL, held better-sqlite3 connection), best of 2 runs of ${READ_SECONDS}s; ratio = replica / local disk`);
      const readsDb = 'reads.db';
      const build = (file: string) => {
        const db = new Database(file);
        try {
          db.pragma('journal_mode=wal');
          db.pragma('synchronous=normal');
          db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)');
          const ins = db.prepare('INSERT INTO t(id, v) VALUES (?, ?)');
          db.transaction(() => {
            for (let i = 1; i <= READ_ROWS; i++) ins.run(i, Buffer.alloc(100, i % 256));
          })();
          db.pragma('wal_checkpoint(TRUNCATE)');
        } finally {
          db.close();
        }
      };
      build(path.join(localRoot, readsDb));
      build(path.join(primary.mnt, readsDb));
      const readSync = await waitInSync(primary, replica, readsDb);
      const readers = [path.join(localRoot, readsDb), path.join(replica.mnt, readsDb)].map((f) => {
        const db = new Database(f, { fileMustExist: true, timeout: 5000 });
        open.push(db);
        return db.prepare('SELECT v FROM t WHERE id = ?');
      });
      const readRate = (get: Database.Statement): Rate => timed(READ_SECONDS, 200, () => get.get(1 + Math.floor(Math.random() * READ_ROWS)));
      for (const get of readers) readRate(get); // warm both page caches the same way
      let bestLocalRead: Rate | undefined;
      let bestReplicaRead: Rate | undefined;
      for (let run = 0; run < 2; run++) {
        const l = readRate(readers[0]!);
        const r = readRate(readers[1]!);
        if (!bestLocalRead || l.perSecond > bestLocalRead.perSecond) bestLocalRead = l;
        if (!bestReplicaRead || r.perSecond > bestReplicaRead.perSecond) bestReplicaRead = r;
      }
      const readRatio = bestReplicaRead!.perSecond / bestLocalRead!.perSecond;
      console.log(
        `   local ${fmt(bestLocalRead!.perSecond).padStart(8)} reads/s | replica ${fmt(bestReplicaRead!.perSecond).padStart(8)} reads/s | ratio ${readRatio.toFixed(2)}` +
          ` (goal >= 0.9: ${readRatio >= 0.9 ? 'met' : 'NOT met'}) | the replica had the table ${readSync.toFixed(0)} ms after the primary's build`,
      );
      summary.push({ what: 'point reads on the replica', local: `${fmt(bestLocalRead!.perSecond)}/s`, litefs: `${fmt(bestReplicaRead!.perSecond)}/s`, ratio: `${readRatio.toFixed(2)}x`, goal: '>= 0.9x', met: readRatio >= 0.9 });
      for (const db of open.splice(0)) db.close();
    }

    // ---- 4. snapshot bootstrap ----
    if (PHASES.has('4')) {
      const targetBytes = SNAPSHOT_MB * 1024 * 1024;
      console.log(`\n4. snapshot bootstrap of a fresh replica from a ${fmt(SNAPSHOT_MB)} MiB database (random blobs, so lz4 gains nothing):`);
      // Only the big database is left on the primary, and no replica takes a
      // copy of it while it is built: the fresh replica's bootstrap is that database alone.
      await stopNode(cluster, replica);
      for (const name of fs.readdirSync(primary.mnt)) {
        if (name.endsWith('.db')) removeDatabase(primary.mnt, name);
      }
      const bigDb = 'big.db';
      const buildStart = now();
      const big = new Database(path.join(primary.mnt, bigDb));
      open.push(big);
      big.pragma('journal_mode=wal');
      big.pragma('synchronous=off');
      // No spilling mid-transaction: a page spilled to the WAL and dirtied again
      // is rewritten in place and SQLite fixes the frame checksums only after
      // writing the commit frame, which the primary then refuses as a
      // checksum mismatch (SQLITE_IOERR_WRITE), so each transaction stays in the cache.
      big.pragma('cache_spill=off');
      big.pragma('cache_size=-262144');
      big.exec('CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)');
      const blob = 64 * 1024;
      const perTx = 512; // 32 MiB transactions
      const fill = big.prepare('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) INSERT INTO big(v) SELECT randomblob(?) FROM c');
      const sizeOf = () => (big.pragma('page_count', { simple: true }) as number) * (big.pragma('page_size', { simple: true }) as number);
      while (sizeOf() < targetBytes) {
        const rows = Math.max(1, Math.min(perTx, Math.ceil((targetBytes - sizeOf()) / blob)));
        fill.run(rows, blob);
      }
      big.pragma('wal_checkpoint(TRUNCATE)');
      const bigBytes = sizeOf();
      big.close();
      open.splice(open.indexOf(big), 1);
      const buildS = (now() - buildStart) / 1000;
      const primaryPos = readPos(primary, bigDb);
      console.log(`   built ${fmt(bigBytes / 1048576)} MiB through the primary's mount in ${buildS.toFixed(1)}s (${fmt(bigBytes / 1048576 / buildS)} MiB/s, 32 MiB transactions, synchronous=OFF); primary at ${primaryPos}`);

      const started = now();
      await cluster.start(fresh);
      const mounted = now();
      await waitInSync(primary, fresh, bigDb, SNAPSHOT_TIMEOUT_S * 1000, 5);
      const synced = now();
      const totalS = (synced - started) / 1000;
      const afterMountS = (synced - mounted) / 1000;
      const mib = bigBytes / 1048576;
      // The log lines come through the processes' pipes a moment after <db>-pos changes.
      const findLine = (node: ClusterNode, re: RegExp) => (node.proc?.output ?? '').split('\n').filter((l) => re.test(l) && l.includes(`db=${bigDb}`)).pop() ?? '';
      let applied = '';
      let sent = '';
      for (const deadline = now() + 3000; now() < deadline && !(applied && sent); await sleepMs(20)) {
        applied = findLine(fresh, /applied a snapshot from the primary/);
        sent = findLine(primary, /sent a snapshot/);
      }
      const rate = mib / totalS;
      console.log(
        `   ${fresh.name}: started → in sync ${totalS.toFixed(2)}s = ${fmt(rate)} MiB/s (goal >= 300: ${rate >= 300 ? 'met' : 'NOT met'});` +
          ` mounting took ${((mounted - started) / 1000).toFixed(2)}s, mounted → in sync ${afterMountS.toFixed(2)}s = ${fmt(mib / afterMountS)} MiB/s`,
      );
      console.log(`   primary log:  ${sent.trim() || '(no "sent a snapshot" line)'}`);
      console.log(`   replica log:  ${applied.trim() || '(no "applied a snapshot" line)'}`);
      if (process.env.BENCH_VERBOSE) {
        console.log(`   --- ${fresh.name} log ---\n${fresh.proc?.output ?? ''}   --- ${primary.name} log since ${fresh.name} started ---`);
        const since = new Date(started).toISOString();
        console.log((primary.proc?.output ?? '').split('\n').filter((l) => l.slice(0, 24) >= since).join('\n'));
      }
      // Where the time went, from the two logs (one clock, ms resolution): the
      // stream restarts, then the last stream's stages.
      const freshLines = (fresh.proc?.output ?? '').split('\n');
      const restarts = freshLines.filter((l) => /replication stream ended/.test(l));
      const connects = freshLines.filter((l) => /connected to the primary/.test(l));
      const at = (line: string) => Date.parse(line.slice(0, 24));
      const sentMs = logField(sent, 'ms');
      const appliedMs = logField(applied, 'ms');
      if (restarts.length) {
        console.log(`   the stream was restarted ${restarts.length} time(s) before the snapshot got through: ${restarts.map((l) => l.replace(/^\S+ WARN /, '')).join(' | ')}`);
      }
      const lastConnect = connects.length ? at(connects[connects.length - 1]!) : NaN;
      if (sentMs !== undefined && appliedMs !== undefined && !Number.isNaN(lastConnect + at(sent) + at(applied))) {
        const firstChunk = at(applied) - appliedMs;
        const seconds = (ms: number) => `${(ms / 1000).toFixed(2)}s`;
        const speed = (ms: number) => `${fmt(mib / (ms / 1000))} MiB/s`;
        console.log(
          `   stages: mounted → last stream connected ${seconds(lastConnect - mounted)}` +
            ` | connected → first chunk at the replica (primary takes the image) ${seconds(firstChunk - lastConnect)} (${speed(firstChunk - lastConnect)})` +
            ` | first chunk → primary sent the last ${seconds(at(sent) - firstChunk)} (${speed(at(sent) - firstChunk)})` +
            ` | → replica applied (copy into its mount) ${seconds(at(applied) - at(sent))} (${speed(at(applied) - at(sent))})`,
        );
      }
      summary.push({ what: `snapshot bootstrap, ${fmt(mib)} MiB`, litefs: `${fmt(rate)} MiB/s (${fmt(mib / afterMountS)} after mount)`, goal: '>= 300 MiB/s', met: rate >= 300 });
    }

    // ---- summary ----
    console.log('\nsummary (ratios = litefs / local disk, measured in the same run; this machine is noisy, ratios hold better than absolute numbers)');
    const header = ['what', 'local disk', 'litefs, 1 replica', 'ratio', 'goal', ''];
    const rows = summary.map((s) => [s.what, s.local ?? '', s.litefs, s.ratio ?? '', s.goal, s.met === undefined ? '' : s.met ? 'met' : 'NOT met']);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
    console.log(line(header));
    console.log('|' + widths.map((wd) => '-'.repeat(wd + 2)).join('|') + '|');
    for (const r of rows) console.log(line(r));
  } catch (err) {
    process.exitCode = 1;
    console.error(`\nbench/replication FAILED: ${(err as Error).stack ?? err}`);
    for (const n of cluster.nodes) {
      if (n.proc) console.error(`--- ${n.name} log tail ---\n${n.proc.output.split('\n').slice(-20).join('\n')}`);
    }
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// Last, so every module-level constant above is initialised before main() runs.
if (isMainThread) await main();
else parentPort!.postMessage(watch(workerData as WatchJob));
