// The lease backends the failover tests run against, behind one shape:
// real etcd (Debian's etcd-server) and the Consul stand-in, each its own
// process that a test can stop and start again.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startEtcd, type EtcdInstance } from './etcd.js';
import { spawnConsulStandIn, type SpawnedStandIn } from './consul/spawn.js';

export type BackendType = 'consul' | 'etcd';

export interface LeaseBackend {
  type: BackendType;
  ttlMs: number;
  lockDelayMs: number;
  /** The lines under `lease:` for one node (type and backend section). */
  leaseYaml(key?: string): string;
  /** Stops the backend process by PID (it keeps its data). */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same address and data. */
  restart(): Promise<void>;
  destroy(): Promise<void>;
  /** Writes a raw value under a key, as an operator's tool would (etcdctl, Consul's KV API). */
  putRaw(key: string, value: string): Promise<void>;
  deleteRaw(key: string): Promise<void>;
  url: string;
}

/** etcd with a 2 s lease TTL and 1 s lock-delay (the figures). */
async function etcdBackend(): Promise<LeaseBackend> {
  const etcd: EtcdInstance = await startEtcd();
  return {
    type: 'etcd', ttlMs: 2000, lockDelayMs: 1000, url: etcd.url,
    putRaw: (key, value) => etcdctl(etcd.url, ['put', key, value]),
    deleteRaw: (key) => etcdctl(etcd.url, ['del', key]),
    leaseYaml: (key = 'litefs/primary') => `  type: etcd\n  etcd:\n    endpoints: ["${etcd.url}"]\n    key: "${key}"\n    ttl: 2s\n    lock-delay: 1s\n`,
    stop: (signal) => etcd.stop(signal),
    restart: () => etcd.restart(),
    destroy: () => etcd.destroy(),
  };
}

/** The Consul stand-in with Consul's minimum TTL, 10 s, and lock-delay 1 s. */
async function consulBackend(): Promise<LeaseBackend> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-consul-'));
  const stateFile = path.join(dir, 'state.json');
  let proc: SpawnedStandIn | undefined = await spawnConsulStandIn({ stateFile });
  const port = proc.port;
  const url = proc.url;
  return {
    type: 'consul', ttlMs: 10_000, lockDelayMs: 1000, url,
    async putRaw(key, value) {
      const res = await fetch(`${url}/v1/kv/${key}`, { method: 'PUT', body: value });
      if (!res.ok) throw new Error(`consul PUT ${key}: ${res.status}`);
    },
    async deleteRaw(key) {
      await fetch(`${url}/v1/kv/${key}`, { method: 'DELETE' });
    },
    leaseYaml: (key = 'litefs/primary') => `  type: consul\n  consul:\n    url: "${url}"\n    key: "${key}"\n    ttl: 10s\n    lock-delay: 1s\n`,
    async stop(signal = 'SIGKILL') {
      await proc?.stop(signal);
      proc = undefined;
    },
    async restart() {
      proc = await spawnConsulStandIn({ port, stateFile });
    },
    async destroy() {
      await proc?.stop('SIGKILL');
      proc = undefined;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function etcdctl(url: string, args: string[]): Promise<void> {
  const r = spawnSync('etcdctl', ['--endpoints', url, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${r.stderr}`);
}

export function startBackend(type: BackendType): Promise<LeaseBackend> {
  return type === 'etcd' ? etcdBackend() : consulBackend();
}
