// Leases under faults: an old primary's unreplicated commits are discarded
// when it rejoins (counted in a log line and a metric); the lease backend
// going away stops writes before the lease could expire while replicas keep
// serving reads, and the cluster recovers by itself when it returns; bad
// lease settings and values give clear errors without a crash loop; a node
// of another cluster is refused.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, sqlite3 } from '../support/clients.js';
import { checkpoint, Cluster, countLines, mountedSha256, type ClusterNode } from '../support/cluster.js';
import { startBackend, type BackendType, type LeaseBackend } from '../support/lease-backends.js';
import { acceptsWriteWithin, expectReadOnly, insert } from '../support/failover.js';
import { MountProcess } from '../support/cli.js';
import { spawnConsulStandIn } from '../support/consul/spawn.js';

const DB = 'faults.db';

async function createTable(node: ClusterNode, mode = 'wal'): Promise<void> {
  const r = await sqlite3(path.join(node.mnt, DB), `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
  assert.equal(r.code, 0, r.stderr);
}

/** Starts three nodes (node1 first, so it is primary) and a table with `rows` rows, in sync everywhere. */
async function startThree(cluster: Cluster, mode: string, rows: string[]): Promise<[ClusterNode, ClusterNode, ClusterNode]> {
  const nodes = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
  await cluster.start(nodes[0]);
  cluster.setPrimary(await cluster.waitForPrimary());
  await cluster.start(nodes[1]);
  await cluster.start(nodes[2]);
  await createTable(nodes[0], mode);
  for (const v of rows) await insert(nodes[0], DB, v);
  await cluster.waitInSync(DB);
  return nodes;
}

async function count(node: ClusterNode): Promise<number> {
  const r = await sqlite3(path.join(node.mnt, DB), 'PRAGMA busy_timeout=2000; SELECT count(*) FROM t;');
  assert.equal(r.code, 0, `read on ${node.name}: ${r.stderr}`);
  return Number(r.stdout.trim().split('\n').pop()); // after busy_timeout's own output line
}

async function metric(node: ClusterNode, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : NaN;
}

/** Starts a node that must exit by itself; its exit code and output. */
async function runToExit(config: string, mnt: string): Promise<{ code: number | null; output: string }> {
  const proc = await MountProcess.start(config, mnt).catch((err: Error) => err);
  if (proc instanceof Error) return { code: Number(/exited \((\d+)\)/.exec(proc.message)?.[1] ?? NaN), output: proc.message };
  const code = await Promise.race([proc.exited, sleep(20_000).then(() => 'still running' as const)]);
  if (code === 'still running') await proc.stop('SIGKILL');
  return { code: code === 'still running' ? null : code, output: proc.output };
}

async function waitFor(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('leases under faults (etcd)', () => {
  let backend: LeaseBackend;
  before(async () => {
    backend = await startBackend('etcd');
  });
  after(async () => {
    await backend.destroy();
  });

  test('an old primary\'s commits that never reached the new primary are discarded when it rejoins, counted in a log line and a metric', async () => {
    const cluster = await Cluster.createDynamic(3, () => backend.leaseYaml('litefs/discard'));
    try {
      const [n1, n2, n3] = await startThree(cluster, 'wal', ['shared-0', 'shared-1', 'shared-2', 'shared-3', 'shared-4']);
      await cluster.stop(n2);
      await cluster.stop(n3);
      for (let i = 0; i < 7; i++) await insert(n1, DB, `lost-${i}`); // no replica gets these
      await cluster.stop(n1, 'SIGKILL');

      await cluster.start(n2);
      await cluster.start(n3);
      const { node: next } = await acceptsWriteWithin([n2, n3], DB, Date.now(), 15_000);
      cluster.setPrimary(next);
      for (let i = 0; i < 3; i++) await insert(next, DB, `new-${i}`);

      await cluster.start(n1);
      await checkpoint(next, DB);
      await cluster.waitInSync(DB, 20_000, cluster.nodes.filter((n) => n !== next));
      await waitFor('the discard log line', 5000, () => countLines(n1, /never reached the new primary/) > 0);
      assert.match(n1.proc!.output, /7 transaction\(s\) this node committed as primary never reached the new primary.*count=7/);
      assert.equal(await metric(n1, 'litefs_discarded_transactions_total'), 7);
      for (const n of cluster.nodes) {
        assert.equal(mountedSha256(n, DB), mountedSha256(next, DB));
        assert.equal(await count(n), 5 + 1 + 3, `${n.name}: the shared rows, the probe and the new primary's rows`);
      }
    } finally {
      await cluster.destroy();
    }
  });

  test('a node of another cluster is refused', async () => {
    const a = await Cluster.createDynamic(1, () => backend.leaseYaml('litefs/cluster-a'));
    const b = await Cluster.createDynamic(1, () => backend.leaseYaml('litefs/cluster-b'));
    try {
      const [na] = a.nodes as [ClusterNode];
      const [nb] = b.nodes as [ClusterNode];
      await a.start(na);
      await a.waitForPrimary();
      await b.start(nb);
      await b.waitForPrimary();
      await a.stop(na);
      // Point node a at cluster b's key: it must refuse to join.
      fs.writeFileSync(na.config, fs.readFileSync(na.config, 'utf8').replace('litefs/cluster-a', 'litefs/cluster-b'));
      const { code, output } = await runToExit(na.config, na.mnt);
      assert.equal(code, 1, output);
      assert.match(output, /this node belongs to cluster LFSC[0-9A-F]{16}, but etcd .* is used by cluster LFSC[0-9A-F]{16}: refusing to join/);
    } finally {
      await a.destroy();
      await b.destroy();
    }
  });

  test('bad lease values and settings: clear errors, no crash loop, recovery once fixed', async () => {
    await backend.putRaw('litefs/bad', 'not json at all');
    const bad = await Cluster.createDynamic(1, () => backend.leaseYaml('litefs/bad'));
    const tiny = await Cluster.createDynamic(1, () => backend.leaseYaml('litefs/tiny').replace('ttl: 2s', 'ttl: 1s'));
    try {
      const [n] = bad.nodes as [ClusterNode];
      await bad.start(n);
      await waitFor('the malformed-value line', 5000, () => countLines(n, /etcd key "litefs\/bad" holds "not json at all"/) > 0);
      await sleep(1500);
      assert.equal(countLines(n, /etcd key "litefs\/bad" holds/), 1, 'logged once, not in a loop');
      assert.equal((await bad.info(n))?.isPrimary, false);
      await backend.deleteRaw('litefs/bad');
      await bad.waitForPrimary(10_000);

      const [t] = tiny.nodes as [ClusterNode];
      await tiny.start(t);
      await waitFor('the TTL line', 5000, () => countLines(t, /lease\.etcd\.ttl/) > 0);
      await sleep(1000);
      assert.ok(t.proc && (await tiny.info(t)) !== undefined, 'the node keeps running (no crash loop)');
      assert.equal(countLines(t, /lease\.etcd\.ttl/), 1, t.proc?.output);
    } finally {
      await bad.destroy();
      await tiny.destroy();
    }
  });
});

for (const type of ['etcd', 'consul'] as BackendType[]) {
  describe(`lease backend unreachable (${type})`, () => {
    let backend: LeaseBackend;
    before(async () => {
      backend = await startBackend(type);
    });
    after(async () => {
      await backend.destroy();
    });

    test('the primary stops writes before its lease could expire; replicas serve reads; the cluster recovers when the backend returns', async () => {
      const cluster = await Cluster.createDynamic(3, () => backend.leaseYaml('litefs/down'));
      try {
        const [n1, n2, n3] = await startThree(cluster, 'delete', ['r-0', 'r-1', 'r-2', 'r-3', 'r-4']);

        await backend.stop('SIGKILL');
        const downAt = Date.now();
        // The lease was last renewed before downAt: it cannot expire before downAt,
        // and must not be relied on past downAt + TTL.
        await sleep(Math.max(0, downAt + backend.ttlMs - Date.now()));
        await expectReadOnly(n1, DB);
        assert.match(n1.proc!.output, /the lease could not be renewed before it could expire/);
        for (const r of [n2, n3]) assert.equal(await count(r), 5, `${r.name} keeps serving reads`);

        await backend.restart();
        const { node: next } = await acceptsWriteWithin(cluster.nodes, DB, Date.now(), 4 * backend.ttlMs + 10_000);
        cluster.setPrimary(next);
        await insert(next, DB, 'after');
        await cluster.waitInSync(DB, 30_000, cluster.nodes.filter((n) => n !== next));
        for (const n of cluster.nodes) assert.equal(await count(n), 5 + 1 + 1);
      } finally {
        await cluster.destroy();
      }
    });
  });
}

describe('leases under faults (consul)', () => {
  test('wrong URL and refused token: one clear line each, the node keeps running; a TTL below Consul\'s minimum is a config error', async () => {
    const guarded = await spawnConsulStandIn({ token: 'right-token' });
    const closed = await Cluster.createDynamic(1, () => `  type: consul\n  consul:\n    url: "http://127.0.0.1:9"\n    ttl: 10s\n`);
    try {
      const [n] = closed.nodes as [ClusterNode];
      await closed.start(n);
      await waitFor('the unreachable line', 5000, () => countLines(n, /consul at http:\/\/127\.0\.0\.1:9.*(ECONNREFUSED|connect)/i) > 0);
      await sleep(2000);
      assert.ok((await closed.info(n)) !== undefined, 'the node keeps running');
      assert.equal(countLines(n, /consul at http:\/\/127\.0\.0\.1:9/), 1, 'logged once while it lasts');

      const cfg = n.config;
      fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('ttl: 10s', 'ttl: 5s'));
      await closed.stop(n);
      const { code, output } = await runToExit(cfg, n.mnt);
      assert.equal(code, 1);
      assert.match(output, /lease\.consul\.ttl: expected a duration from 10s to 24h/);

      // A token the server refuses: said once, without the token itself.
      fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('ttl: 5s', 'ttl: 10s').replace('http://127.0.0.1:9', `http://:wrong-token@127.0.0.1:${guarded.port}`));
      await closed.start(n);
      await waitFor('the token line', 5000, () => countLines(n, /token/i) > 0);
      await sleep(1500);
      assert.equal(countLines(n, /token/i), 1, n.proc!.output);
      assert.doesNotMatch(n.proc!.output, /wrong-token/);
      assert.ok((await closed.info(n)) !== undefined, 'the node keeps running');
    } finally {
      await closed.destroy();
      await guarded.stop('SIGKILL');
    }
  });
});
