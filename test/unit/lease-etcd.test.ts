// EtcdLeaser against a real etcd (Debian etcd-server 3.4) on loopback.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { EtcdLeaser, type EtcdLeaserOptions } from '../../src/lease/etcd.js';
import { LeaseBackendError, LeaseHeldError, LeaseLostError, MalformedLeaseValueError, formatPrimaryInfo, type Lease } from '../../src/lease/lease.js';
import { startEtcd, type EtcdInstance } from '../support/etcd.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const b64 = (s: string) => Buffer.from(s).toString('base64');

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function gateway(etcd: EtcdInstance, path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(etcd.url + path, { method: 'POST', body: JSON.stringify(body) });
  return (await res.json()) as Record<string, unknown>;
}

async function leaseCount(etcd: EtcdInstance): Promise<number> {
  const r = (await gateway(etcd, '/v3/lease/leases', {})) as { leases?: unknown[] };
  return r.leases?.length ?? 0;
}

/** How many watchers etcd has open now (its own gauge). */
async function watchers(etcd: EtcdInstance): Promise<number> {
  const text = await (await fetch(`${etcd.url}/metrics`)).text();
  return Number(/^etcd_debugging_mvcc_watcher_total (\d+)$/m.exec(text)?.[1] ?? NaN);
}

/** Waits until etcd has no watcher left (the leaser must close its watch connections). */
async function watchersGone(etcd: EtcdInstance): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    if ((await watchers(etcd)) === 0) return true;
    await sleep(25);
  }
  return false;
}

describe('EtcdLeaser against a real etcd', () => {
  let etcd: EtcdInstance;
  const leasers: EtcdLeaser[] = [];
  let keys = 0;

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    for (const l of leasers) await l.close();
    await etcd?.destroy();
  });

  /** A leaser on etcd; `name` is its hostname; pass the same key to make rivals. */
  function leaser(name: string, key: string, opts: Partial<EtcdLeaserOptions> = {}): EtcdLeaser {
    const l = new EtcdLeaser({ endpoints: [etcd.url], key, ttl: 2000, lockDelay: 1500, hostname: name, advertiseUrl: `http://${name}:20202`, ...opts });
    leasers.push(l);
    return l;
  }
  const newKey = () => `/litefs/test-${++keys}`;

  /** Polls until the key is gone (the lease expired): at most `ms`. */
  async function untilGone(l: EtcdLeaser, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if ((await l.primaryInfo()) === undefined) return;
      await sleep(100);
    }
    assert.fail('the lease key was not deleted in time');
  }

  test('acquire writes this node as primary, bound to an etcd lease', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const before = Date.now();
    const lease = await a.acquire();
    assert.match(lease.id, /^[1-9][0-9]*$/);
    assert.equal(lease.ttl, 2000);
    assert.ok(lease.renewedAt >= before && lease.renewedAt <= Date.now());
    const r = (await gateway(etcd, '/v3/kv/range', { key: b64(key) })) as { kvs?: { value: string; lease: string }[] };
    assert.equal(Buffer.from(r.kvs![0]!.value, 'base64').toString(), formatPrimaryInfo({ hostname: 'a', advertiseUrl: 'http://a:20202' }));
    assert.equal(r.kvs![0]!.lease, lease.id);
    assert.equal(a.type, 'etcd');
    assert.match(a.describe, new RegExp(`${etcd.url}.*${key}`));
  });

  test('a second leaser gets LeaseHeldError naming the holder, and primaryInfo shows it', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    assert.equal(await b.primaryInfo(), undefined);
    const leasesBefore = await leaseCount(etcd);
    await a.acquire();
    const err = await b.acquire().then(
      () => assert.fail('acquired a held lease'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof LeaseHeldError, String(err));
    assert.match(err.message, /held by a \(http:\/\/a:20202\)/);
    assert.deepEqual(err.primary, { hostname: 'a', advertiseUrl: 'http://a:20202' });
    assert.deepEqual(await b.primaryInfo(), { hostname: 'a', advertiseUrl: 'http://a:20202' });
    assert.equal(await leaseCount(etcd), leasesBefore + 1, 'the loser must not leave a lease behind');
  });

  test('renew keeps the lease past its TTL', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    const lease = await a.acquire();
    const first = lease.renewedAt;
    const until = Date.now() + 3500;
    while (Date.now() < until) {
      await sleep(600);
      await lease.renew();
    }
    assert.ok(lease.renewedAt > first + 3000);
    assert.equal(lease.ttl, 2000);
    assert.deepEqual(await b.primaryInfo(), { hostname: 'a', advertiseUrl: 'http://a:20202' });
  });

  test('an expired lease: renew throws LeaseLostError and the key is gone', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    const lease = await a.acquire();
    await untilGone(b, 5000);
    await assert.rejects(lease.renew(), LeaseLostError);
    const r = (await gateway(etcd, '/v3/kv/range', { key: b64(key) })) as { kvs?: unknown[] };
    assert.equal(r.kvs, undefined);
  });

  test('a key deleted or overwritten behind our back: renew throws LeaseLostError', async () => {
    const key = newKey();
    const a = leaser('a', key, { lockDelay: 0 }); // a deletion by hand looks like an expiry
    const lease = await a.acquire();
    await gateway(etcd, '/v3/kv/deleterange', { key: b64(key) });
    await assert.rejects(lease.renew(), (e: unknown) => e instanceof LeaseLostError && /was deleted/.test(e.message));
    const again = await a.acquire();
    await gateway(etcd, '/v3/kv/put', { key: b64(key), value: b64(formatPrimaryInfo({ hostname: 'x', advertiseUrl: 'http://x:1' })) });
    await assert.rejects(again.renew(), (e: unknown) => e instanceof LeaseLostError && /held by lease 0/.test(e.message));
  });

  test('lock-delay after an expiry holds off acquire (seen by watch and by primaryInfo), then lets it through', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    const c = leaser('c', key);
    await a.acquire();
    assert.ok(await b.primaryInfo());
    assert.ok(await c.primaryInfo());
    // b learns of the expiry through its watch, c through primaryInfo.
    await b.waitForChange(5000);
    const seen = Date.now();
    assert.equal(await b.primaryInfo(), undefined);
    await untilGone(c, 1000);
    for (const l of [b, c]) {
      await assert.rejects(l.acquire(), (e: unknown) => e instanceof LeaseHeldError && /lock-delay/.test(e.message) && e.primary === undefined);
    }
    await sleep(seen + 1500 - Date.now() + 50);
    const lease = await b.acquire();
    assert.ok(lease.id);
    assert.deepEqual(await c.primaryInfo(), { hostname: 'b', advertiseUrl: 'http://b:20202' });
  });

  test('after a clean release another leaser acquires at once (no lock-delay)', async () => {
    const key = newKey();
    const a = leaser('a', key, { lockDelay: 30_000 });
    const b = leaser('b', key, { lockDelay: 30_000 });
    const c = leaser('c', key, { lockDelay: 30_000 });
    const lease = await a.acquire();
    assert.ok(await b.primaryInfo());
    assert.ok(await c.primaryInfo());
    const woke = b.waitForChange(5000);
    await lease.release();
    await woke;
    assert.equal(await c.primaryInfo(), undefined); // c sees the deletion by a look
    const lb = await b.acquire();
    await lb.release();
    const lc = await c.acquire();
    assert.ok(lc.id);
    assert.equal(await leaseCount(etcd) >= 1, true);
    // a released lease cannot be renewed
    await assert.rejects(lease.renew(), LeaseLostError);
  });

  test('acquireExisting takes over the same etcd lease (handoff), and its renewals keep it', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    const old = await a.acquire();
    const lease = await b.acquireExisting(old.id);
    old.abandon();
    assert.equal(lease.id, old.id);
    assert.equal(lease.ttl, 2000);
    assert.deepEqual(await a.primaryInfo(), { hostname: 'b', advertiseUrl: 'http://b:20202' });
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      await sleep(600);
      await lease.renew();
    }
    assert.deepEqual(await a.primaryInfo(), { hostname: 'b', advertiseUrl: 'http://b:20202' });
    await assert.rejects(old.renew(), LeaseLostError);
    await assert.rejects(leaser('c', key).acquireExisting('12345'), LeaseLostError);
    await assert.rejects(leaser('c', key).acquireExisting('not-an-id'), LeaseLostError);
  });

  test('waitForChange wakes soon after a change, resolves on timeout and on abort, and leaves no watch open', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    assert.equal(await b.primaryInfo(), undefined);
    let wokeAt = 0;
    const w = b.waitForChange(5000).then(() => (wokeAt = Date.now()));
    await sleep(300);
    assert.equal(wokeAt, 0, 'woke without a change');
    assert.equal(await watchers(etcd), 1);
    await a.acquire();
    const changedAt = Date.now();
    await w;
    assert.ok(wokeAt - changedAt < 100, `woke ${wokeAt - changedAt} ms after the change`);
    assert.ok(await watchersGone(etcd), 'a watch is still open after waitForChange resolved');

    assert.ok(await b.primaryInfo());
    let t0 = Date.now();
    await b.waitForChange(300);
    const took = Date.now() - t0;
    assert.ok(took >= 290 && took < 1000, `timeout took ${took} ms`);

    const ac = new AbortController();
    t0 = Date.now();
    setTimeout(() => ac.abort(), 100);
    await b.waitForChange(5000, ac.signal);
    assert.ok(Date.now() - t0 < 1000);
    assert.ok(await watchersGone(etcd), 'a watch is still open after a timeout or abort');
  });

  test('setClusterId is create-only: two racing leasers agree on one id', async () => {
    const key = newKey();
    const a = leaser('a', key);
    const b = leaser('b', key);
    assert.equal(await a.clusterId(), undefined);
    const [ra, rb] = await Promise.all([a.setClusterId('LFSC-aaaa'), b.setClusterId('LFSC-bbbb')]);
    assert.equal(ra, rb);
    assert.ok(ra === 'LFSC-aaaa' || ra === 'LFSC-bbbb');
    assert.equal(await a.clusterId(), ra);
    assert.equal(await b.clusterId(), ra);
    assert.equal(await b.setClusterId('LFSC-cccc'), ra);
  });

  test('a value no litefs wrote: MalformedLeaseValueError', async () => {
    const key = newKey();
    await gateway(etcd, '/v3/kv/put', { key: b64(key), value: b64('not json') });
    const a = leaser('a', key);
    await assert.rejects(a.primaryInfo(), (e: unknown) => e instanceof MalformedLeaseValueError && e.message.includes(`etcd key "${key}"`));
    await assert.rejects(a.acquire(), (e: unknown) => e instanceof LeaseHeldError && /no litefs wrote|not the JSON/.test(e.message));
  });

  test('a closed port: LeaseBackendError naming the URL; a second endpoint is tried', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const bad = new EtcdLeaser({ endpoints: [url], key: newKey(), ttl: 2000, lockDelay: 0, hostname: 'a', advertiseUrl: 'http://a:1' });
    leasers.push(bad);
    await assert.rejects(bad.primaryInfo(), (e: unknown) => e instanceof LeaseBackendError && e.message === `etcd at ${url}: cannot connect (ECONNREFUSED)` && !e.permanent);
    await assert.rejects(bad.acquire(), LeaseBackendError);
    const t0 = Date.now();
    await bad.waitForChange(300); // never rejects
    assert.ok(Date.now() - t0 < 1000);

    const both = leaser('b', newKey(), { endpoints: [url, etcd.url] });
    const lease = await both.acquire();
    await lease.renew();
    assert.deepEqual(await both.primaryInfo(), { hostname: 'b', advertiseUrl: 'http://b:20202' });
  });

  test('a TTL below etcd minimum: permanent LeaseBackendError naming lease.etcd.ttl, no lease left', async () => {
    const a = leaser('a', newKey(), { ttl: 1000 });
    const before = await leaseCount(etcd);
    const err = await a.acquire().then(
      () => assert.fail('acquired with ttl 1s'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof LeaseBackendError, String(err));
    assert.equal(err.permanent, true);
    assert.match(err.message, /lease\.etcd\.ttl is 1000 ms .*at least 2s/);
    assert.equal(await leaseCount(etcd), before);
    assert.equal(await a.primaryInfo(), undefined);
  });
});

describe('EtcdLeaser when etcd goes away and comes back', () => {
  let etcd: EtcdInstance | undefined;
  let a: EtcdLeaser | undefined;
  after(async () => {
    await a?.close();
    await etcd?.destroy();
  });

  test('renew throws LeaseBackendError while etcd is down, and works after restart', async () => {
    etcd = await startEtcd();
    a = new EtcdLeaser({ endpoints: [etcd.url], key: '/litefs/restart', ttl: 6000, lockDelay: 1000, hostname: 'a', advertiseUrl: 'http://a:20202' });
    const lease: Lease = await a.acquire();
    const pid = etcd.pid;
    await etcd.stop();
    assert.throws(() => process.kill(pid, 0), 'etcd still running after stop()');
    const err = await lease.renew().then(
      () => assert.fail('renewed with etcd down'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof LeaseBackendError && !(err instanceof LeaseLostError), String(err));
    assert.match(err.message, new RegExp(`^etcd at ${etcd.url}: cannot connect \\(ECONNREFUSED\\)`));
    await assert.rejects(a.primaryInfo(), LeaseBackendError);
    await a.waitForChange(200);

    await etcd.restart();
    assert.notEqual(etcd.pid, pid);
    await lease.renew();

    // A hung etcd (stopped, connections accepted but unanswered) cannot stall a renewal.
    process.kill(etcd.pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      await assert.rejects(lease.renew(), (e: unknown) => e instanceof LeaseBackendError && /no answer to .* within 2000 ms/.test(e.message));
      assert.ok(Date.now() - t0 < 2600, `renew took ${Date.now() - t0} ms`);
    } finally {
      process.kill(etcd.pid, 'SIGCONT');
    }
    await lease.renew();
    assert.deepEqual(await a.primaryInfo(), { hostname: 'a', advertiseUrl: 'http://a:20202' });
    await lease.release();
    assert.equal(await a.primaryInfo(), undefined);
  });
});
