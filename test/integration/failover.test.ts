// The cluster elects its primary and survives it being killed (issue 5's
// scenario), for Consul (the stand-in) and etcd (real), in wal and delete
// modes: three candidates mount; the primary takes the lease; the sqlite3
// CLI writes on it; both replicas show the rows, byte-identical; a write on
// a replica fails at once; kill -9 of the primary; another candidate takes
// the lease and accepts writes within the bound; the killed node starts
// again, rejoins as a replica, catches up and refuses writes.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { sqlite3, type JournalMode } from '../support/clients.js';
import { checkpoint, Cluster, mountedSha256, type ClusterNode } from '../support/cluster.js';
import { startBackend, type BackendType, type LeaseBackend } from '../support/lease-backends.js';
import { acceptsWriteWithin, expectReadOnly, insert } from '../support/failover.js';

const DB = 'failover.db';

async function sameEverywhere(cluster: Cluster, nodes: ClusterNode[]): Promise<void> {
  await checkpoint(cluster.primary, DB);
  await cluster.waitInSync(DB, 20_000, nodes.filter((n) => n !== cluster.primary));
  const want = mountedSha256(cluster.primary, DB);
  for (const n of nodes) {
    assert.equal(mountedSha256(n, DB), want, `${n.name} is byte-identical to the primary ${cluster.primary.name}`);
    assert.equal((await sqlite3(path.join(n.mnt, DB), 'PRAGMA integrity_check;')).stdout, 'ok\n');
  }
}

for (const type of ['etcd', 'consul'] as BackendType[]) {
  describe(`failover with ${type}`, () => {
    let backend: LeaseBackend;
    before(async () => {
      backend = await startBackend(type);
    });
    after(async () => {
      await backend.destroy();
    });

    for (const mode of ['wal', 'delete'] as JournalMode[]) {
      test(`${mode}: kill -9 of the primary; another candidate takes over; the old one rejoins as a replica`, async () => {
        const cluster = await Cluster.createDynamic(3, () => backend.leaseYaml(`litefs/${mode}`));
        try {
          const [n1, n2, n3] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode];
          await cluster.start(n1);
          cluster.setPrimary(await cluster.waitForPrimary(15_000));
          assert.equal(cluster.primary, n1, 'the first node up takes the lease');
          await cluster.start(n2);
          await cluster.start(n3);
          const create = await sqlite3(path.join(n1.mnt, DB), `PRAGMA journal_mode=${mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);`);
          assert.equal(create.code, 0, create.stderr);
          for (let i = 0; i < 20; i++) await insert(n1, DB, `before-${i}`);
          await sameEverywhere(cluster, cluster.nodes);
          for (const r of [n2, n3]) {
            const rows = await sqlite3(path.join(r.mnt, DB), 'SELECT count(*) FROM t;');
            assert.equal(rows.stdout, '20\n', `${r.name} shows the rows`);
            await expectReadOnly(r, DB);
          }
          const info = await cluster.info(n2);
          assert.equal(info?.primary, 'node1', '/info names the primary');
          assert.ok(info?.clusterId?.startsWith('LFSC'), 'the cluster id is recorded');

          await cluster.stop(n1, 'SIGKILL');
          const killedAt = Date.now();
          const bound = (type === 'consul' ? 2 * backend.ttlMs : backend.ttlMs) + backend.lockDelayMs + 2000;
          const { node: next, ms } = await acceptsWriteWithin([n2, n3], DB, killedAt, bound + 5000);
          assert.ok(ms <= bound, `a new primary accepted a write ${ms} ms after kill -9 (bound ${bound} ms)`);
          cluster.setPrimary(next);
          for (let i = 0; i < 10; i++) await insert(next, DB, `after-${i}`);

          await cluster.start(n1);
          await sameEverywhere(cluster, cluster.nodes);
          await expectReadOnly(n1, DB);
          assert.equal((await cluster.info(n1))?.isPrimary, false, 'the old primary is a replica now');
          const count = await sqlite3(path.join(n1.mnt, DB), 'SELECT count(*) FROM t;');
          assert.equal(count.stdout, '31\n', 'every acknowledged row (20 + the probe + 10) is there');
        } finally {
          await cluster.destroy();
        }
      });
    }

    test('SIGTERM of the primary: a candidate accepts writes within 2 s; handoff (POST /promote) within 1 s', async () => {
      const cluster = await Cluster.createDynamic(2, () => backend.leaseYaml('litefs/clean'));
      try {
        const [n1, n2] = cluster.nodes as [ClusterNode, ClusterNode];
        await cluster.startFirstAsPrimary();
        assert.equal((await sqlite3(path.join(n1.mnt, DB), 'PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);')).code, 0);
        for (let i = 0; i < 5; i++) await insert(n1, DB, `a-${i}`);
        await cluster.waitInSync(DB);

        // Handoff to n2: well under a second, nothing lost.
        const started = Date.now();
        const res = await fetch(`${n2.url}/promote`, { method: 'POST' });
        const handoffMs = Date.now() - started;
        assert.equal(res.status, 200, await res.text());
        assert.ok(handoffMs < 1000, `handoff took ${handoffMs} ms`);
        cluster.setPrimary(n2);
        await insert(n2, DB, 'after-handoff');
        await expectReadOnly(n1, DB);
        await sameEverywhere(cluster, cluster.nodes);

        // Clean stop of n2: n1 takes over at once (no lock-delay after a release).
        const stopping = cluster.stop(n2, 'SIGTERM');
        const stoppedAt = Date.now();
        const { ms } = await acceptsWriteWithin([n1], DB, stoppedAt, 10_000);
        await stopping;
        assert.ok(ms <= 2000, `a write was accepted ${ms} ms after SIGTERM of the primary`);
        cluster.setPrimary(n1);
        const count = await sqlite3(path.join(n1.mnt, DB), 'SELECT count(*) FROM t;');
        assert.equal(count.stdout, '7\n', 'nothing was lost: 5 + after-handoff + the probe');
      } finally {
        await cluster.destroy();
      }
    });
  });
}
