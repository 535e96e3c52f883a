// Several `litefs mount` nodes on 127.0.0.1, each its own process, mount,
// data dir and port: one static primary and replicas pointed at it.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { MountProcess } from './cli.js';
import { mountPoints } from '../../src/fuse/mountpoint.js';
import { sleep, sqlite3, tempDirs } from './clients.js';

/** Ports handed out by this process: a node may not be listening on its port yet when the next is asked for. */
const handedOut = new Set<number>();
/** Below Linux's default ephemeral range (32768–60999), from which outgoing connections take their local ports. */
const PORT_RANGE = { from: 20000, to: 32000 };

/**
 * A port free now, for a node to listen on later. Not one the kernel picks
 * (listen on port 0): those come from the ephemeral range, and an outgoing
 * connection made meanwhile could take it (seen once: EADDRINUSE at a
 * replica's start).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from));
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found in ${PORT_RANGE.from}..${PORT_RANGE.to}`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export interface NodeInfo {
  hostname: string;
  isPrimary: boolean;
  candidate: boolean;
  primary: string | null;
  clusterId: string | null;
  databases: Record<string, { txid: number; position: string }>;
}

export interface ClusterNode {
  name: string;
  mnt: string;
  data: string;
  port: number;
  url: string;
  config: string;
  proc?: MountProcess;
}

export class Cluster {
  readonly nodes: ClusterNode[] = [];
  private readonly dirs = tempDirs('litefs-cluster-');

  get root(): string {
    return this.dirs.root;
  }

  /** The static primary; in a dynamic cluster, the node set by setPrimary(). */
  get primary(): ClusterNode {
    return this.current ?? this.nodes[0]!;
  }

  private current?: ClusterNode;

  setPrimary(node: ClusterNode): void {
    this.current = node;
  }

  get replicas(): ClusterNode[] {
    return this.nodes.filter((n) => n !== this.primary);
  }

  /** Creates (does not start) a primary and `replicas` replicas; `extra` is appended to every config. */
  static async create(replicas: number, opts: { extra?: string; dataExtra?: string; primaryExtra?: string } = {}): Promise<Cluster> {
    const c = new Cluster();
    const primaryPort = await freePort();
    for (let i = 0; i <= replicas; i++) {
      const name = i === 0 ? 'primary' : `replica${i}`;
      const port = i === 0 ? primaryPort : await freePort();
      c.addNode(
        name, port, opts.dataExtra,
        `lease:\n  type: static\n  hostname: primary-host\n  candidate: ${i === 0}\n  advertise-url: "http://127.0.0.1:${primaryPort}"\n  reconnect-delay: 200ms\n` +
          `${opts.extra ?? ''}${i === 0 ? (opts.primaryExtra ?? '') : ''}`,
      );
    }
    return c;
  }

  /**
   * Creates (does not start) `n` candidate nodes of a cluster with a
   * dynamic lease; `lease(node)` gives the type-specific lines of each
   * node's `lease:` section (indented two spaces).
   */
  static async createDynamic(n: number, lease: (name: string) => string, opts: { extra?: string; dataExtra?: string } = {}): Promise<Cluster> {
    const c = new Cluster();
    for (let i = 1; i <= n; i++) {
      const name = `node${i}`;
      const port = await freePort();
      c.addNode(name, port, opts.dataExtra, `lease:\n  hostname: ${name}\n  advertise-url: "http://127.0.0.1:${port}"\n  reconnect-delay: 200ms\n${lease(name)}${opts.extra ?? ''}`);
    }
    return c;
  }

  /** Directories and config of one node; `tail` is the config from `lease:` on. */
  private addNode(name: string, port: number, dataExtra: string | undefined, tail: string): void {
    const mnt = path.join(this.root, name, 'mnt');
    const data = path.join(this.root, name, 'data');
    fs.mkdirSync(mnt, { recursive: true });
    fs.mkdirSync(data, { recursive: true });
    const config = path.join(this.root, `${name}.yml`);
    fs.writeFileSync(config, `fuse:\n  dir: "${mnt}"\ndata:\n  dir: "${data}"\n${dataExtra ?? ''}http:\n  addr: "127.0.0.1:${port}"\n${tail}`);
    this.nodes.push({ name, mnt, data, port, url: `http://127.0.0.1:${port}`, config });
  }

  /** GET /info of a running node (undefined when it does not answer). */
  async info(node: ClusterNode): Promise<NodeInfo | undefined> {
    try {
      const res = await fetch(`${node.url}/info`, { signal: AbortSignal.timeout(2000) });
      return (await res.json()) as NodeInfo;
    } catch {
      return undefined;
    }
  }

  /** Waits until one running node (among `among`) says it is primary; returns it. */
  async waitForPrimary(timeoutMs = 30_000, among = this.nodes.filter((n) => n.proc)): Promise<ClusterNode> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const n of among) if ((await this.info(n))?.isPrimary) return n;
      if (Date.now() > deadline) throw new Error(`no primary among ${among.map((n) => n.name).join(', ')} within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  async start(node: ClusterNode): Promise<MountProcess> {
    node.proc = await MountProcess.start(node.config, node.mnt);
    return node.proc;
  }

  /** Dynamic clusters: starts the first node, waits until it holds the lease, then starts the others; returns it. */
  async startFirstAsPrimary(timeoutMs = 15_000): Promise<ClusterNode> {
    const [first, ...rest] = this.nodes;
    await this.start(first!);
    this.setPrimary(await this.waitForPrimary(timeoutMs));
    for (const n of rest) await this.start(n);
    return this.primary;
  }

  async startAll(): Promise<void> {
    for (const n of this.nodes) await this.start(n);
  }

  async stop(node: ClusterNode, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = node.proc;
    node.proc = undefined;
    if (p) await p.stop(signal);
  }

  /** Stops every node (by PID; SIGKILL if SIGTERM takes over 15 s), clears mounts a kill left, removes the directories. */
  async destroy(): Promise<void> {
    const keep = process.env['LITEFS_TEST_LOGS'];
    for (const n of [...this.nodes].reverse()) {
      const p = n.proc;
      const stopping = this.stop(n).catch(() => undefined);
      const late = setTimeout(() => p?.child.kill('SIGKILL'), 15_000);
      await stopping;
      clearTimeout(late);
      if (keep && p) fs.writeFileSync(path.join(keep, `${path.basename(this.root)}-${n.name}.log`), p.output);
      // A node that did not stop cleanly (killed, or a test that failed) may leave its mount.
      if (mountPoints().has(n.mnt)) spawnSync('fusermount3', ['-u', '-z', n.mnt]);
    }
    this.dirs.cleanup();
  }

  /** Waits until every replica's `<db>-pos` equals the primary's. */
  async waitInSync(db: string, timeoutMs = 20_000, replicas = this.replicas.filter((r) => r.proc)): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let want = '';
    for (;;) {
      want = readPos(this.primary, db);
      const got = replicas.map((r) => readPos(r, db));
      if (want && got.every((g) => g === want)) return want;
      if (Date.now() > deadline) throw new Error(`replicas did not reach ${db} at ${want}: ${got.join(', ')}`);
      await sleep(20);
    }
  }
}

export function readPos(node: ClusterNode, db: string): string {
  try {
    return fs.readFileSync(path.join(node.mnt, `${db}-pos`), 'utf8').trim();
  } catch {
    return '';
  }
}

/** sha256 of a database file read through a node's mount. */
export function mountedSha256(node: ClusterNode, db: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(path.join(node.mnt, db))).digest('hex');
}

/** Moves the primary's WAL into its database file, so the file is the whole database. */
export async function checkpoint(node: ClusterNode, db: string): Promise<void> {
  const r = await sqlite3(path.join(node.mnt, db), 'PRAGMA wal_checkpoint(TRUNCATE);');
  if (r.code !== 0) throw new Error(`checkpoint of ${db}: ${r.stderr}`);
}

/** Count of log lines matching `re` in a node's output so far. */
export function countLines(node: ClusterNode, re: RegExp): number {
  return (node.proc?.output ?? '').split('\n').filter((l) => re.test(l)).length;
}
