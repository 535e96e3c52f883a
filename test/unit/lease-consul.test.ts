// Checks src/lease/consul.ts (ConsulLeaser) against the Consul stand-in in
// test/support/consul/, and the stand-in's own Consul semantics over raw
// HTTP where the leaser does not exercise them. Each test starts its own
// stand-in (in-process, or as a child process for the kill -9 restart) and
// closes it, its leasers and any child (by PID) at the end. TTL timers run
// compressed (ttlScale) where a test waits for an expiry.

import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { ConsulLeaser, type ConsulLeaserOptions } from '../../src/lease/consul.js';
import { formatPrimaryInfo, LeaseBackendError, LeaseHeldError, LeaseLostError, MalformedLeaseValueError } from '../../src/lease/lease.js';
import { startConsulStandIn, type StandIn, type StandInOptions } from '../support/consul/server.js';
import { spawnConsulStandIn } from '../support/consul/spawn.js';

const KEY = 'litefs/primary';

async function standIn(t: TestContext, opts: StandInOptions = {}): Promise<StandIn> {
  const s = await startConsulStandIn(opts);
  t.after(() => s.close());
  return s;
}

function leaser(t: TestContext, url: string, name: string, over: Partial<ConsulLeaserOptions> = {}): ConsulLeaser {
  const l = new ConsulLeaser({ url, key: KEY, ttl: 10_000, lockDelay: 1000, hostname: name, advertiseUrl: `http://${name}:20202`, ...over });
  t.after(() => l.close());
  return l;
}

interface RawReply {
  status: number;
  index: number;
  text: string;
  json: () => unknown;
}

async function raw(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<RawReply> {
  const res = await fetch(base + path, { method, body, headers });
  const text = await res.text();
  return { status: res.status, index: Number(res.headers.get('x-consul-index')), text, json: () => JSON.parse(text) };
}

async function rawSession(base: string, body: object = {}): Promise<string> {
  const r = await raw(base, 'PUT', '/v1/session/create', JSON.stringify(body));
  assert.equal(r.status, 200, r.text);
  return (r.json() as { ID: string }).ID;
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const info = (name: string) => ({ hostname: name, advertiseUrl: `http://${name}:20202` });

describe('ConsulLeaser', () => {
  test('acquire locks the key with a delete-behaviour session and this node as value', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a', { lockDelay: 1500 });
    const before = Date.now();
    const lease = await a.acquire();
    assert.match(lease.id, /^[0-9a-f-]{36}$/);
    assert.equal(lease.ttl, 10_000);
    assert.ok(lease.renewedAt >= before && lease.renewedAt <= Date.now());
    const e = s.state.kv.get(KEY)!;
    assert.equal(e.Session, lease.id);
    assert.equal(Buffer.from(e.Value!, 'base64').toString(), formatPrimaryInfo(info('a')));
    const sess = s.state.sessions.get(lease.id)!;
    assert.deepEqual([sess.Name, sess.Behavior, sess.TTL, sess.LockDelay, sess.NodeChecks], ['litefs-a', 'delete', '10s', 1.5e9, []]);
    assert.equal(a.describe, `consul ${s.url} key "litefs/primary"`);
  });

  test('a second leaser gets LeaseHeldError naming the holder, and leaves no session behind', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a');
    const b = leaser(t, s.url, 'b');
    assert.equal(await b.primaryInfo(), undefined);
    await a.acquire();
    const err = await b.acquire().then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof LeaseHeldError, String(err));
    assert.deepEqual(err.primary, info('a'));
    assert.match(err.message, /held by a \(http:\/\/a:20202\)/);
    assert.equal(s.state.sessions.size, 1);
    assert.deepEqual(await b.primaryInfo(), info('a'));
  });

  test('renewals keep the lease past 2×TTL; without them it expires: LeaseLostError and the key is deleted', async (t) => {
    const s = await standIn(t, { ttlScale: 0.03 }); // TTL 10s → 300 ms, invalidated after 600 ms
    const a = leaser(t, s.url, 'a');
    const b = leaser(t, s.url, 'b');
    const lease = await a.acquire();
    let last = lease.renewedAt;
    for (let i = 0; i < 8; i++) {
      await sleep(100);
      await lease.renew();
      assert.ok(lease.renewedAt >= last);
      last = lease.renewedAt;
    }
    assert.equal(s.state.kv.get(KEY)?.Session, lease.id);
    await sleep(1000);
    await assert.rejects(lease.renew(), LeaseLostError);
    assert.equal(s.state.kv.has(KEY), false);
    assert.equal(await b.primaryInfo(), undefined);
  });

  test('lock-delay blocks acquire after an invalidation, not after a release', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a', { lockDelay: 500 });
    const b = leaser(t, s.url, 'b', { lockDelay: 500 });
    const la = await a.acquire();
    assert.equal((await raw(s.url, 'PUT', `/v1/session/destroy/${la.id}`)).text, 'true');
    const err = await b.acquire().then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof LeaseHeldError, String(err));
    assert.match(err.message, /lock-delay/);
    assert.equal(err.primary, undefined);
    await sleep(600);
    const lb = await b.acquire();
    await lb.release();
    // Released: the key stays, unlocked; no lock-delay, so a takes it at once.
    assert.equal(s.state.kv.get(KEY)?.Session, undefined);
    assert.equal(await a.primaryInfo(), undefined);
    const la2 = await a.acquire();
    assert.equal(s.state.kv.get(KEY)?.Session, la2.id);
    assert.equal(s.state.sessions.has(lb.id), false);
  });

  test('acquireExisting takes over a handed-over session; the new holder keeps it by renewing', async (t) => {
    const s = await standIn(t, { ttlScale: 0.03 }); // renewals every 100 ms against a 600 ms invalidation
    const a = leaser(t, s.url, 'a');
    const b = leaser(t, s.url, 'b');
    const c = leaser(t, s.url, 'c');
    const la = await a.acquire();
    const lockIndex = s.state.kv.get(KEY)!.LockIndex;
    const lb = await b.acquireExisting(la.id);
    la.abandon();
    assert.equal(lb.id, la.id);
    assert.equal(s.state.kv.get(KEY)!.LockIndex, lockIndex);
    assert.deepEqual(await c.primaryInfo(), info('b'));
    await assert.rejects(la.renew(), LeaseLostError);
    for (let i = 0; i < 8; i++) {
      await sleep(100);
      await lb.renew();
    }
    assert.deepEqual(await c.primaryInfo(), info('b'));
    await assert.rejects(c.acquireExisting('00000000-0000-0000-0000-000000000000'), LeaseLostError);
    await assert.rejects(c.acquireExisting(await rawSession(s.url)), LeaseLostError); // a live session that does not hold the key
  });

  test('waitForChange wakes on a change, on timeout, and on abort', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a');
    const c = leaser(t, s.url, 'c');
    assert.equal(await c.primaryInfo(), undefined);
    let t0 = Date.now();
    const waiting = c.waitForChange(5000);
    await sleep(100);
    await a.acquire();
    await waiting;
    assert.ok(Date.now() - t0 < 1500, `woke after ${Date.now() - t0} ms`);
    assert.deepEqual(await c.primaryInfo(), info('a'));
    t0 = Date.now();
    await c.waitForChange(300);
    const took = Date.now() - t0;
    assert.ok(took >= 280 && took < 1500, `timeout took ${took} ms`);
    const ac = new AbortController();
    t0 = Date.now();
    const aborted = c.waitForChange(5000, ac.signal);
    await sleep(50);
    ac.abort();
    await aborted;
    assert.ok(Date.now() - t0 < 1000);
  });

  test('setClusterId is create-only: racing nodes agree on one id', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a');
    const b = leaser(t, s.url, 'b');
    assert.equal(await a.clusterId(), undefined);
    const [x, y] = await Promise.all([a.setClusterId('LFSCaaaa'), b.setClusterId('LFSCbbbb')]);
    assert.equal(x, y);
    assert.ok(x === 'LFSCaaaa' || x === 'LFSCbbbb');
    assert.equal(await b.clusterId(), x);
    assert.equal(await a.setClusterId('LFSCcccc'), x);
    assert.equal(s.state.kv.get(`${KEY}/cluster-id`)?.Session, undefined);
  });

  test('a value no litefs wrote: MalformedLeaseValueError from primaryInfo, LeaseHeldError from acquire', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a');
    const other = await rawSession(s.url, { TTL: '30s' });
    assert.equal((await raw(s.url, 'PUT', `/v1/kv/${KEY}?acquire=${other}`, 'garbage')).text, 'true');
    await assert.rejects(a.primaryInfo(), MalformedLeaseValueError);
    const err = await a.acquire().then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof LeaseHeldError, String(err));
    assert.equal(err.primary, undefined);
    assert.equal(s.state.sessions.size, 1);
  });

  test('nothing listening: LeaseBackendError naming the URL; waitForChange still resolves', async (t) => {
    const port = await closedPort();
    const a = leaser(t, `http://127.0.0.1:${port}`, 'a');
    for (const p of [a.acquire(), a.primaryInfo(), a.clusterId()]) {
      const err = await (p as Promise<unknown>).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof LeaseBackendError, String(err));
      assert.equal(err.message, `consul at http://127.0.0.1:${port}: cannot connect (ECONNREFUSED)`);
      assert.equal(err.permanent, false);
    }
    const t0 = Date.now();
    await a.waitForChange(300);
    assert.ok(Date.now() - t0 < 1500);
  });

  test('a backend that accepts but never answers: requests time out well within the TTL', async (t) => {
    const sockets = new Set<net.Socket>();
    const hung = net.createServer((sock) => sockets.add(sock));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      for (const sock of sockets) sock.destroy();
      hung.close();
    });
    const port = (hung.address() as net.AddressInfo).port;
    const a = leaser(t, `http://127.0.0.1:${port}`, 'a', { ttl: 1500 }); // timeout = TTL/3 = 500 ms
    const t0 = Date.now();
    const err = await a.acquire().then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof LeaseBackendError, String(err));
    assert.match(err.message, new RegExp(`^consul at http://127\\.0\\.0\\.1:${port}: no answer within 500 ms`));
    assert.ok(Date.now() - t0 < 1200, `took ${Date.now() - t0} ms`);
  });

  test('a refused ACL token is a permanent LeaseBackendError that never shows the token', async (t) => {
    const s = await standIn(t, { token: 'right-token-123' });
    const host = s.url.slice('http://'.length);
    const bad = leaser(t, `http://:wrong-token-456@${host}`, 'a');
    for (const p of [bad.acquire(), bad.primaryInfo()]) {
      const err = await (p as Promise<unknown>).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof LeaseBackendError, String(err));
      assert.equal(err.permanent, true);
      assert.match(err.message, /ACL token was refused/);
      assert.ok(err.message.includes(s.url) && !err.message.includes('wrong-token-456') && !err.message.includes('right-token'), err.message);
    }
    const good = leaser(t, `http://user:right-token-123@${host}`, 'b');
    assert.ok(!good.describe.includes('right-token'));
    const lease = await good.acquire();
    await lease.renew();
    // Raw: Consul's texts for no token and an unknown one; the query parameter and Bearer forms work.
    assert.deepEqual([(await raw(s.url, 'GET', `/v1/kv/${KEY}`)).status, (await raw(s.url, 'GET', `/v1/kv/${KEY}`)).text], [403, 'Permission denied']);
    assert.equal((await raw(s.url, 'GET', `/v1/kv/${KEY}`, undefined, { 'X-Consul-Token': 'nope' })).text, 'ACL not found');
    assert.equal((await raw(s.url, 'GET', `/v1/kv/${KEY}?token=right-token-123`)).status, 200);
    assert.equal((await raw(s.url, 'GET', `/v1/kv/${KEY}`, undefined, { Authorization: 'Bearer right-token-123' })).status, 200);
  });

  test('a TTL Consul refuses (5s) is a permanent LeaseBackendError naming lease.consul.ttl', async (t) => {
    const s = await standIn(t);
    const a = leaser(t, s.url, 'a', { ttl: 5000 });
    const err = await a.acquire().then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof LeaseBackendError, String(err));
    assert.equal(err.permanent, true);
    assert.match(err.message, /lease\.consul\.ttl/);
    assert.match(err.message, /Invalid Session TTL '5000000000', must be between \[10s=24h0m0s\]/);
    assert.equal(s.state.sessions.size, 0);
  });

  test('a stand-in killed with -9 and restarted with --state keeps the key and the session', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'consul-stand-in-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const stateFile = join(dir, 'state.json');
    const first = await spawnConsulStandIn({ stateFile });
    t.after(() => first.stop('SIGKILL'));
    const a = leaser(t, first.url, 'a');
    const lease = await a.acquire();
    await a.setClusterId('LFSC1234');
    await first.stop('SIGKILL');
    assert.equal(await first.exited, 'SIGKILL');
    const second = await spawnConsulStandIn({ stateFile, port: first.port });
    t.after(() => second.stop('SIGKILL'));
    assert.notEqual(second.pid, first.pid);
    const b = leaser(t, second.url, 'b');
    assert.deepEqual(await b.primaryInfo(), info('a'));
    assert.equal(await b.clusterId(), 'LFSC1234');
    await lease.renew();
    const e = (await raw(second.url, 'GET', `/v1/kv/${KEY}`)).json() as { Session: string }[];
    assert.equal(e[0]!.Session, lease.id);
    await assert.rejects(b.acquire(), LeaseHeldError);
  });
});

describe('Consul stand-in (raw HTTP)', () => {
  test('session create: defaults, TTL and check validation, renew/destroy/info answers', async (t) => {
    const s = await standIn(t);
    const id = await rawSession(s.url);
    const [sess] = (await raw(s.url, 'GET', `/v1/session/info/${id}`)).json() as Record<string, unknown>[];
    assert.deepEqual([sess!['Behavior'], sess!['LockDelay'], sess!['TTL'], sess!['NodeChecks']], ['release', 15e9, '', ['serfHealth']]);
    let r = await raw(s.url, 'PUT', '/v1/session/create', JSON.stringify({ TTL: 'abc' }));
    assert.deepEqual([r.status, r.text], [500, `Session TTL 'abc' invalid: time: invalid duration "abc"`]);
    r = await raw(s.url, 'PUT', '/v1/session/create', JSON.stringify({ TTL: '86401s' }));
    assert.equal(r.status, 500);
    r = await raw(s.url, 'PUT', '/v1/session/create', JSON.stringify({ NodeChecks: ['service:web'] }));
    assert.deepEqual([r.status, r.text], [500, `Missing check 'service:web' registration`]);
    r = await raw(s.url, 'PUT', '/v1/session/create', JSON.stringify({ LockDelay: 5 })); // small numbers are seconds
    const five = (r.json() as { ID: string }).ID;
    assert.equal(s.state.sessions.get(five)!.LockDelay, 5e9);
    r = await raw(s.url, 'PUT', '/v1/session/renew/nope');
    assert.deepEqual([r.status, r.text], [404, `Session id 'nope' not found`]);
    assert.equal((await raw(s.url, 'PUT', `/v1/session/renew/${id}`)).status, 200);
    assert.equal((await raw(s.url, 'PUT', '/v1/session/destroy/nope')).text, 'true');
    assert.equal(((await raw(s.url, 'GET', '/v1/session/list')).json() as unknown[]).length, 2);
    assert.equal((await raw(s.url, 'GET', '/v1/session/create')).status, 405);
    assert.equal((await raw(s.url, 'GET', '/v1/nothing')).status, 404);
  });

  test('TTL is a lower bound: the session ends after TTL × multiplier', async (t) => {
    const s = await standIn(t, { ttlScale: 0.05 }); // 10s → 500 ms; invalidated after 1 s
    const id = await rawSession(s.url, { TTL: '10s' });
    await sleep(700);
    assert.ok(s.state.sessions.has(id));
    await sleep(600);
    assert.equal(s.state.sessions.has(id), false);
  });

  test('KV locks: release behaviour, LockIndex, invalid session, plain sets keep the holder', async (t) => {
    const s = await standIn(t);
    const s1 = await rawSession(s.url, { LockDelay: '0s' });
    const s2 = await rawSession(s.url, { LockDelay: '0s' });
    assert.equal((await raw(s.url, 'PUT', `/v1/kv/k?acquire=${s1}`, 'one')).text, 'true');
    assert.equal((await raw(s.url, 'PUT', `/v1/kv/k?acquire=${s2}`, 'two')).text, 'false');
    assert.equal((await raw(s.url, 'PUT', '/v1/kv/k', 'plain')).text, 'true');
    let [e] = (await raw(s.url, 'GET', '/v1/kv/k')).json() as Record<string, unknown>[];
    assert.deepEqual([e!['Session'], e!['LockIndex'], e!['Value']], [s1, 1, Buffer.from('plain').toString('base64')]);
    const before = e!['ModifyIndex'] as number;
    await raw(s.url, 'PUT', `/v1/session/destroy/${s1}`);
    [e] = (await raw(s.url, 'GET', '/v1/kv/k')).json() as Record<string, unknown>[];
    assert.equal(e!['Session'], undefined); // Behavior release: unlocked, kept
    assert.ok((e!['ModifyIndex'] as number) > before);
    assert.equal((await raw(s.url, 'PUT', `/v1/kv/k?acquire=${s2}`, 'two')).text, 'true'); // LockDelay 0: at once
    assert.equal(s.state.kv.get('k')!.LockIndex, 2);
    const r = await raw(s.url, 'PUT', `/v1/kv/k?acquire=${s1}`, 'x');
    assert.deepEqual([r.status, r.text], [500, `invalid session "${s1}"`]);
    assert.equal((await raw(s.url, 'GET', '/v1/kv/k?raw')).text, 'two');
    assert.deepEqual((await raw(s.url, 'GET', '/v1/kv/?keys')).json(), ['k']);
  });

  test('KV cas: 0 creates only; an index must match; delete with cas', async (t) => {
    const s = await standIn(t);
    assert.equal((await raw(s.url, 'PUT', '/v1/kv/c?cas=0', 'a')).text, 'true');
    assert.equal((await raw(s.url, 'PUT', '/v1/kv/c?cas=0', 'b')).text, 'false');
    const idx = s.state.kv.get('c')!.ModifyIndex;
    assert.equal((await raw(s.url, 'PUT', `/v1/kv/c?cas=${idx + 100}`, 'b')).text, 'false');
    assert.equal((await raw(s.url, 'PUT', `/v1/kv/c?cas=${idx}`, 'b')).text, 'true');
    assert.equal((await raw(s.url, 'DELETE', `/v1/kv/c?cas=${idx}`)).text, 'false');
    assert.equal((await raw(s.url, 'DELETE', '/v1/kv/c')).text, 'true');
    const r = await raw(s.url, 'GET', '/v1/kv/c');
    assert.deepEqual([r.status, r.text], [404, '']);
    assert.ok(r.index > idx); // the index of the delete
  });

  test('blocking query on a missing key wakes when it is created; times out with the same index', async (t) => {
    const s = await standIn(t);
    const first = await raw(s.url, 'GET', '/v1/kv/w');
    assert.equal(first.status, 404);
    let t0 = Date.now();
    const waiting = raw(s.url, 'GET', `/v1/kv/w?index=${first.index}&wait=5s`);
    await sleep(100);
    await raw(s.url, 'PUT', '/v1/kv/w', 'v');
    const woke = await waiting;
    assert.equal(woke.status, 200);
    assert.ok(woke.index > first.index && Date.now() - t0 < 1500);
    t0 = Date.now();
    const timedOut = await raw(s.url, 'GET', `/v1/kv/w?index=${woke.index}&wait=200ms`);
    assert.equal(timedOut.index, woke.index);
    assert.ok(Date.now() - t0 >= 195);
    assert.equal((await raw(s.url, 'GET', '/v1/kv/w?wait=zz&index=1')).status, 400);
  });
});
