// The backup across a failover (etcd lease): the primary is killed with
// kill -9 while uploads are in flight (the fault proxy holds S3's answers
// back); another candidate takes the lease and its backup continues, in the
// same generation or a new one; a restore of the latest point equals the
// new primary's database.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { sleep, sqlite3 } from '../support/clients.js';
import { Cluster, type ClusterNode } from '../support/cluster.js';
import { startBackend, type LeaseBackend } from '../support/lease-backends.js';
import { startFaultProxy, startS3rver, type FaultProxy, type S3rverHandle } from '../support/s3.js';
import { backupYaml, commitRows, fileSha256, recordPoint, restore, waitBackedUp } from '../support/backup.js';

const DB = 'failover-backup.db';

describe('S3 backup across a failover', () => {
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  let backend: LeaseBackend;
  before(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy(s3.endpoint);
    backend = await startBackend('etcd');
  });
  after(async () => {
    await proxy.close();
    await s3.destroy();
    await backend.destroy();
  });

  test('kill -9 of the primary mid-upload: the new primary backs up; restore of the latest equals it', async () => {
    const cluster = await Cluster.createDynamic(2, () => backend.leaseYaml('litefs/backup'), { extra: backupYaml(proxy.endpoint, s3.bucket, 'failover') });
    try {
      const [n1, n2] = cluster.nodes as [ClusterNode, ClusterNode];
      await cluster.startFirstAsPrimary();
      assert.equal((await sqlite3(path.join(n1.mnt, DB), 'PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);')).code, 0);
      await commitRows(n1, DB, 20, 'n1');
      await waitBackedUp(n1, DB);
      await cluster.waitInSync(DB);

      await proxy.setMode('slow', { delayMs: 1500 });
      await commitRows(n1, DB, 10, 'in-flight');
      await sleep(300);
      assert.ok(proxy.requests.some((q) => q.method === 'PUT' && q.status === null), 'an upload is in flight');
      await cluster.stop(n1, 'SIGKILL');
      await proxy.pass();

      cluster.setPrimary(await cluster.waitForPrimary(30_000, [n2]));
      await commitRows(n2, DB, 10, 'n2');
      await waitBackedUp(n2, DB, 60_000);
      assert.match(n2.proc!.output, /backup continues its generation|backup: new generation/);
      const point = await recordPoint(n2, DB);
      const out = path.join(cluster.root, 'latest.db');
      const r = await restore(n2, DB, out);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fileSha256(out), point.sha256, 'the restore equals the new primary');
      const rows = await sqlite3(out, 'SELECT count(*) FROM t WHERE v LIKE \'n2-%\';');
      assert.equal(rows.stdout, '10\n');
    } finally {
      await cluster.destroy();
    }
  });
});
