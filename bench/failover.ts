// bench/failover: time from the primary's death to the first write another
// node accepts, after kill -9 and after SIGTERM, for etcd (real) and Consul
// (the stand-in, which keeps Consul's timing: TTL 10 s honoured as up to
// 2 × TTL, lock-delay after an expiry, none after a release). Three
// candidates; each run kills the current primary, times the first accepted
// write, then starts the killed node again and waits until all are in sync.
// BENCH_RUNS (default 5) runs per case; BENCH_BACKENDS (default etcd,consul).
import path from 'node:path';
import { sqlite3 } from '../test/support/clients.js';
import { Cluster, type ClusterNode } from '../test/support/cluster.js';
import { acceptsWriteWithin } from '../test/support/failover.js';
import { startBackend, type BackendType } from '../test/support/lease-backends.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const BACKENDS = (process.env['BENCH_BACKENDS'] ?? 'etcd,consul').split(',') as BackendType[];
const DB = 'bench.db';

function stats(ms: number[]): string {
  const avg = ms.reduce((a, b) => a + b, 0) / ms.length;
  return `avg ${(avg / 1000).toFixed(2)} s (min ${(Math.min(...ms) / 1000).toFixed(2)}, max ${(Math.max(...ms) / 1000).toFixed(2)}; ${ms.length} runs)`;
}

async function bench(type: BackendType): Promise<void> {
  const backend = await startBackend(type);
  const cluster = await Cluster.createDynamic(3, () => backend.leaseYaml('litefs/bench'));
  try {
    const [n1] = cluster.nodes as [ClusterNode];
    await cluster.start(n1);
    cluster.setPrimary(await cluster.waitForPrimary());
    for (const n of cluster.nodes.slice(1)) await cluster.start(n);
    await sqlite3(path.join(n1.mnt, DB), 'PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);');
    await cluster.waitInSync(DB);
    const bound = (type === 'consul' ? 2 * backend.ttlMs : backend.ttlMs) + backend.lockDelayMs + 2000;
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const old = cluster.primary;
        const others = cluster.nodes.filter((n) => n !== old);
        const stopping = cluster.stop(old, signal);
        const since = Date.now();
        const { node, ms } = await acceptsWriteWithin(others, DB, since, bound + 30_000);
        await stopping;
        times.push(ms);
        cluster.setPrimary(node);
        await cluster.start(old);
        await cluster.waitInSync(DB, 60_000);
      }
      const label = signal === 'SIGKILL' ? 'kill -9' : 'SIGTERM';
      console.log(`${type.padEnd(6)} ${label.padEnd(8)} first accepted write after ${stats(times)}${signal === 'SIGKILL' ? `; bound ${(bound / 1000).toFixed(0)} s` : '; bound 2 s'}`);
    }
  } finally {
    await cluster.destroy();
    await backend.destroy();
  }
}

for (const type of BACKENDS) await bench(type);
