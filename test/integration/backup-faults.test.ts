// The backup when things go wrong: S3 stopped for 30 s while the primary
// commits (with a local retention short enough to have dropped what was not
// uploaded, were it not kept); then bad input for restore: wrong
// credentials, a missing bucket, a corrupted and a truncated object, a gap
// in segments, 5xx answers. Restore stops with one line naming the culprit
// and never leaves anything at -o.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, sqlite3, tempDirs } from '../support/clients.js';
import { Cluster, type ClusterNode } from '../support/cluster.js';
import { startFaultProxy, startS3rver, type FaultProxy, type S3rverHandle } from '../support/s3.js';
import { backupInfo, backupYaml, commitRows, fileSha256, recordPoint, restore, waitBackedUp } from '../support/backup.js';
import { litefs } from '../support/cli.js';

const DB = 'faults.db';

/** A config with only what restore needs, pointing at `endpoint`. */
function restoreConfig(dir: string, name: string, yaml: string): ClusterNode {
  const config = path.join(dir, `${name}.yml`);
  fs.writeFileSync(config, `fuse:\n  dir: "${dir}/mnt"\ndata:\n  dir: "${dir}/data"\nlease:\n  type: static\n${yaml}`);
  return { name, mnt: '', data: '', port: 0, url: '', config };
}

describe('S3 backup faults', () => {
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  const dirs = tempDirs('litefs-backup-faults-');
  const dir = path.join(dirs.root, 'restore');
  fs.mkdirSync(dir);
  before(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy(s3.endpoint);
  });
  after(async () => {
    await proxy.close();
    await s3.destroy();
    dirs.cleanup();
  });

  test('S3 stopped for 30 s: the primary keeps committing, the backup catches up, nothing is lost', async () => {
    const cluster = await Cluster.create(0, {
      extra: backupYaml(s3.endpoint, s3.bucket, 'outage'),
      dataExtra: '  retention: 1s\n  retention-monitor-interval: 500ms\n',
    });
    try {
      const primary = cluster.primary;
      await cluster.start(primary);
      assert.equal((await sqlite3(path.join(primary.mnt, DB), 'PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);')).code, 0);
      await commitRows(primary, DB, 10, 'before');
      const generation = (await waitBackedUp(primary, DB)).generation;
      await s3.stop();
      const downUntil = Date.now() + 30_000;
      let rounds = 0;
      while (Date.now() < downUntil) {
        await commitRows(primary, DB, 5, `down${rounds++}`);
        await sleep(200);
      }
      const during = await backupInfo(primary, DB);
      assert.ok(during && during.pending > 0 && during.error, `the backup reports it is behind: ${JSON.stringify(during)}`);
      await s3.restart();
      const after = await waitBackedUp(primary, DB, 60_000);
      assert.equal(after.generation, generation, 'the same generation continues: the local log kept what was not uploaded');
      const point = await recordPoint(primary, DB);
      const out = path.join(cluster.root, 'after-outage.db');
      const r = await restore(primary, DB, out);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fileSha256(out), point.sha256, 'the restore equals the primary');
      assert.match(primary.proc!.output, /backup upload failed/);
      assert.match(primary.proc!.output, /backup caught up/);
    } finally {
      await cluster.destroy();
    }
  });

  test('a candidate with an empty disk whose backup cannot be read refuses to start, in one line', async () => {
    const cluster = await Cluster.create(0, { extra: backupYaml('http://127.0.0.1:9', s3.bucket, 'unreachable') });
    try {
      await assert.rejects(cluster.start(cluster.primary), (err: Error) => {
        assert.match(err.message, /litefs mount exited \(1\)/);
        assert.match(err.message, /litefs: cannot restore from the backup \(.*\); fix backup:/);
        assert.doesNotMatch(err.message, /\n\s+at /, 'no stack trace');
        return true;
      });
    } finally {
      await cluster.destroy();
    }
  });

  test('bad input: credentials, bucket, corrupted, truncated and missing objects', async () => {
    const cluster = await Cluster.create(0, { extra: backupYaml(s3.endpoint, s3.bucket, 'bad', '  snapshot-interval: 1h\n') });
    const out = path.join(dir, 'out.db');
    const fails = async (node: ClusterNode, pattern: RegExp, what: string) => {
      const r = await restore(node, DB, out);
      assert.equal(r.code, 1, `${what}: exit 1 (${r.stderr})`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line: ${r.stderr}`);
      assert.match(r.stderr, pattern, what);
      assert.ok(!fs.existsSync(out), `${what}: nothing written to -o`);
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('out')), [], `${what}: no temporary file left`);
    };
    try {
      const primary = cluster.primary;
      await cluster.start(primary);
      assert.equal((await sqlite3(path.join(primary.mnt, DB), 'PRAGMA journal_mode=delete; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);')).code, 0);
      for (let i = 0; i < 4; i++) {
        await commitRows(primary, DB, 3, `batch${i}`);
        await waitBackedUp(primary, DB);
      }
      const point = await recordPoint(primary, DB);
      await cluster.stop(primary);
      const keys = await s3.listKeys('bad/');
      const segments = keys.filter((k) => k.endsWith('.seg.lz4'));
      const snapshot = keys.find((k) => k.endsWith('.snapshot.lz4'))!;
      assert.ok(segments.length >= 2, `several segments: ${keys.join(', ')}`);

      proxy.checkSignatures(true);
      await fails(restoreConfig(dir, 'badsecret', backupYaml(proxy.endpoint, s3.bucket, 'bad').replace('secret-access-key: S3RVER', 'secret-access-key: wrong')), /SignatureDoesNotMatch/, 'wrong secret');
      await fails(restoreConfig(dir, 'badkey', backupYaml(proxy.endpoint, s3.bucket, 'bad').replace('access-key-id: S3RVER', 'access-key-id: NOBODY')), /InvalidAccessKeyId/, 'wrong key id');
      proxy.checkSignatures(false);
      await fails(restoreConfig(dir, 'nobucket', backupYaml(s3.endpoint, 'no-such-bucket', 'bad')), /no-such-bucket.*NoSuchBucket|NoSuchBucket.*no-such-bucket/, 'missing bucket');

      const middle = segments[0]!; // a later one follows it
      const original = await s3.getObject(middle);
      const flipped = Buffer.from(original);
      flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
      await s3.putObject(middle, flipped);
      await fails(primary, new RegExp(middle.replace(/[.]/g, '\\.')), 'corrupted segment');
      await s3.deleteObject(middle);
      await fails(primary, /gap/, 'a gap in segments');
      await s3.putObject(middle, original);

      const snapBytes = await s3.getObject(snapshot);
      await s3.putObject(snapshot, snapBytes.subarray(0, snapBytes.length - 100));
      await fails(primary, new RegExp(snapshot.replace(/[.]/g, '\\.')), 'truncated snapshot');
      await s3.putObject(snapshot, snapBytes);

      // Transient 5xx answers are retried; the restore goes through.
      proxy.failNext(2, 503);
      const viaProxy = restoreConfig(dir, 'flaky', backupYaml(proxy.endpoint, s3.bucket, 'bad'));
      const ok = await restore(viaProxy, DB, out);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(fileSha256(out), point.sha256, 'after the faults are gone the restore equals the primary');
      assert.ok(proxy.requests.some((q) => q.status === 503), 'the proxy did answer 503');

      const missing = await litefs(['restore', '-config', primary.config, '-o', path.join(dir, 'none.db'), 'absent.db']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /absent\.db/);
      const skip = await litefs(['restore', '-config', primary.config, '-o', path.join(dir, 'none.db'), '-if-replica-exists', 'absent.db']);
      assert.equal(skip.code, 0, skip.stderr);
    } finally {
      await cluster.destroy();
    }
  });
});
