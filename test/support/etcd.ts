// A real single-member etcd (Debian's etcd-server 3.4) on loopback for
// tests: its own temp data dir and free ports, started and stopped by PID.
// stop() + restart() make the backend go away and come back on the same
// ports and data, so a leaser's view of it survives.
import { removeServerDir, ServerProcess, tempDirForServer } from './server-process.js';

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


import { freePort } from './cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;

export async function startEtcd(opts: { dataDir?: string } = {}): Promise<EtcdInstance> {
  const ownDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? tempDirForServer('litefs-etcd-');
  const clientPort = await freePort();
  const peerPort = await freePort(); // never the same port twice in one process
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

  const server = new ServerProcess();

  const launch = async (): Promise<void> => {
    const c = server.spawn(ETCD_BIN, args);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (server.hasExited(c)) {
        throw new Error(`etcd exited before it was healthy (${c.exitCode ?? c.signalCode}): ${server.output.slice(-2000)}`);
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
    await server.stop('SIGKILL');
    throw new Error(`etcd at ${url} was not healthy within 15 s: ${server.output.slice(-2000)}`);
  };

  const stop = (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => server.stop(signal);

  try {
    await launch();
  } catch (err) {
    await stop('SIGKILL');
    if (ownDir) removeServerDir(dataDir);
    throw err;
  }

  return {
    url,
    clientPort,
    peerPort,
    get pid() {
      return server.child?.pid ?? -1;
    },
    dataDir,
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async destroy() {
      await stop('SIGKILL');
      if (ownDir) removeServerDir(dataDir);
    },
    get output() {
      return server.output;
    },
  };
}
