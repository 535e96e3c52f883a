// A real single-member etcd (Debian's etcd-server 3.4) on loopback for
// tests: its own temp data dir and free ports, started and stopped by PID.
// stop() + restart() make the backend go away and come back on the same
// ports and data, so a leaser's view of it survives.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ETCD_BIN = process.env['ETCD_BIN'] ?? '/usr/bin/etcd';

export interface EtcdInstance {
  url: string;
  clientPort: number;
  peerPort: number;
  /** PID of the etcd process running now (changes on restart). */
  readonly pid: number;
  dataDir: string;
  /** Kills etcd by PID and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts etcd again on the same ports and data dir. */
  restart(): Promise<void>;
  /** stop() (SIGKILL) and remove the data dir if startEtcd made it (the WAL preallocates ~62 MB). */
  destroy(): Promise<void>;
  /** What etcd printed (warnings and errors only). */
  readonly output: string;
}

// Kill whatever is still running if the test process exits without its
// after() hooks having run (a crash, an uncaught error).
const running = new Set<ChildProcess>();
const ownDirs = new Set<string>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
  for (const d of ownDirs) fs.rmSync(d, { recursive: true, force: true });
});


import { freePort } from './cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;

export async function startEtcd(opts: { dataDir?: string } = {}): Promise<EtcdInstance> {
  const ownDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-etcd-'));
  if (ownDir) ownDirs.add(dataDir);
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const name = `litefs-test-${process.pid}-${++seq}`;
  const url = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name', name,
    '--data-dir', dataDir,
    '--listen-client-urls', url,
    '--advertise-client-urls', url,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${name}=${peerUrl}`,
    '--initial-cluster-state', 'new',
    '--logger', 'zap',
    '--log-level', 'warn',
    '--log-outputs', 'stderr',
  ];

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  const launch = async (): Promise<void> => {
    const c = spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: false });
    child = c;
    running.add(c);
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    exited = new Promise<void>((resolve) => {
      c.once('exit', () => {
        running.delete(c);
        resolve();
      });
      c.once('error', (err) => {
        output += `spawn error: ${err.message}\n`;
        running.delete(c);
        resolve();
      });
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null || c.signalCode !== null || !running.has(c)) {
        throw new Error(`etcd exited before it was healthy (${c.exitCode ?? c.signalCode}): ${output.slice(-2000)}`);
      }
      try {
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
        const body = (await res.json()) as { health?: string };
        if (res.ok && body.health === 'true') return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    c.kill('SIGKILL');
    await exited;
    throw new Error(`etcd at ${url} was not healthy within 15 s: ${output.slice(-2000)}`);
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    if (!c) return;
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, signal);
      } catch {
        // already gone
      }
    }
    await exited;
  };

  try {
    await launch();
  } catch (err) {
    await stop('SIGKILL');
    if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
    ownDirs.delete(dataDir);
    throw err;
  }

  return {
    url,
    clientPort,
    peerPort,
    get pid() {
      return child?.pid ?? -1;
    },
    dataDir,
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async destroy() {
      await stop('SIGKILL');
      if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
      ownDirs.delete(dataDir);
    },
    get output() {
      return output;
    },
  };
}
