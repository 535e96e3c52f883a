// The S3 test support itself: s3rver as a child process (objects, ranges,
// pagination, stop/restart) and the fault proxy (injected 5xx, down, hang,
// slow, refuse, reset, SigV4 checking).
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { startS3rver, startFaultProxy, type FaultProxy, type S3rverHandle } from '../support/s3.js';

/** The S3 error name (the XML Code) or the network error code of a failed call. */
async function failure(p: Promise<unknown>): Promise<{ name: string; status?: number; code?: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { name: string; code?: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, code: e.code };
  }
  assert.fail('expected the call to fail');
}

describe('s3rver', () => {
  let s3: S3rverHandle;
  before(async () => {
    s3 = await startS3rver({ buckets: ['one', 'two'] });
  });
  after(async () => {
    await s3?.destroy();
  });

  test('put, get, head, list, delete', async () => {
    assert.equal(s3.bucket, 'one');
    assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    await s3.putObject('dir/a b+ü.txt', 'hello');
    await s3.putObject('dir/bin', new Uint8Array([0, 1, 2, 255]));
    await s3.putObject('other', 'x', 'two');
    assert.equal((await s3.getObject('dir/a b+ü.txt')).toString(), 'hello');
    assert.deepEqual([...(await s3.getObject('dir/bin'))], [0, 1, 2, 255]);
    assert.deepEqual(await s3.listKeys('dir/'), ['dir/a b+ü.txt', 'dir/bin']);
    assert.deepEqual(await s3.listKeys('', 'two'), ['other']);
    const head = await s3.client().send(new HeadObjectCommand({ Bucket: s3.bucket, Key: 'dir/bin' }));
    assert.equal(head.ContentLength, 4);
    assert.match(head.ETag ?? '', /^"[0-9a-f]{32}"$/); // quoted MD5
    await s3.deleteObject('dir/bin');
    assert.deepEqual(await s3.listKeys('dir/'), ['dir/a b+ü.txt']);
    await s3.deleteObject('dir/bin'); // deleting a missing key succeeds, as on S3

    assert.equal((await failure(s3.getObject('missing'))).name, 'NoSuchKey');
    assert.equal((await failure(s3.getObject('missing', 'no-such-bucket'))).name, 'NoSuchBucket');
  });

  test('streamed upload is stored without chunk framing', async () => {
    const body = Readable.from([Buffer.from('abc'), Buffer.from('defg')]);
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'streamed', Body: body, ContentLength: 7 }));
    assert.equal((await s3.getObject('streamed')).toString(), 'abcdefg');
  });

  test('ranged GET', async () => {
    await s3.putObject('range', '0123456789');
    const out = await s3.client().send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'range', Range: 'bytes=2-5' }));
    assert.equal(out.ContentRange, 'bytes 2-5/10');
    assert.equal(await out.Body!.transformToString(), '2345');
    const bad = await failure(s3.client().send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'range', Range: 'bytes=50-60' })));
    assert.deepEqual([bad.name, bad.status], ['InvalidRange', 416]);
  });

  test('listKeys follows continuation tokens', async () => {
    // s3rver manages a few hundred requests/s, so >1000 keys would take seconds: use small pages.
    const keys = Array.from({ length: 60 }, (_, i) => `many/${String(i).padStart(3, '0')}`);
    await Promise.all(keys.map((k) => s3.putObject(k, '')));
    const first = await s3.client().send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'many/', MaxKeys: 25 }));
    assert.equal(first.IsTruncated, true);
    assert.equal(first.Contents?.length, 25);
    assert.ok(first.NextContinuationToken);
    assert.deepEqual(await s3.listKeys('many/', s3.bucket, 25), keys);
    assert.deepEqual(await s3.listKeys('many/'), keys);
  });

  test('stop makes S3 unreachable; restart brings back the same objects on the same port', async () => {
    await s3.putObject('durable', 'still here');
    const pid = s3.pid;
    const client = s3.client(undefined, { maxAttempts: 1 });
    await s3.stop();
    assert.equal(s3.pid, -1);
    const down = await failure(client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'durable' })));
    assert.equal(down.code, 'ECONNREFUSED');
    await s3.restart();
    assert.notEqual(s3.pid, pid);
    assert.equal((await s3.getObject('durable')).toString(), 'still here');
    const out = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'durable' }));
    assert.equal(await out.Body!.transformToString(), 'still here');
    await s3.restart(); // restart while running stops it first
    assert.deepEqual(await s3.listKeys('durable'), ['durable']);
  });
});

describe('fault proxy', () => {
  let s3: S3rverHandle;
  let proxy: FaultProxy;
  let client: S3Client;
  const get = (key: string, signal?: AbortSignal) =>
    client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }), { abortSignal: signal }).then((o) => o.Body!.transformToString());

  before(async () => {
    s3 = await startS3rver();
    proxy = await startFaultProxy(s3.endpoint);
    client = s3.client(proxy.endpoint, { maxAttempts: 1 });
    await s3.putObject('k', 'value');
  });
  // A failed test must not leave its fault behind for the next one.
  beforeEach(async () => {
    await proxy.pass();
    proxy.checkSignatures(false);
  });
  after(async () => {
    await proxy?.close();
    await s3?.destroy();
  });

  test('forwards requests and logs them', async () => {
    proxy.clear();
    const body = Readable.from([Buffer.from('stream'), Buffer.from('ed')]);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'via-proxy', Body: body, ContentLength: 8 }));
    assert.equal(await get('via-proxy'), 'streamed');
    assert.deepEqual(
      proxy.requests.map((r) => [r.method, r.url.split('?')[0], r.status]),
      [['PUT', `/${s3.bucket}/via-proxy`, 200], ['GET', `/${s3.bucket}/via-proxy`, 200]],
    );
  });

  test('failNext answers n requests with an S3 error, then forwards', async () => {
    proxy.failNext(2);
    const e = await failure(get('k'));
    assert.deepEqual([e.name, e.status], ['ServiceUnavailable', 503]);
    assert.equal((await failure(get('k'))).name, 'ServiceUnavailable');
    assert.equal(await get('k'), 'value');
    proxy.failNext(1, 500);
    const e500 = await failure(get('k'));
    assert.deepEqual([e500.name, e500.status], ['InternalError', 500]);
    // With retries on, the SDK rides over a single injected failure.
    proxy.failNext(1);
    const retrying = s3.client(proxy.endpoint, { maxAttempts: 3 });
    const out = await retrying.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' }));
    assert.equal(await out.Body!.transformToString(), 'value');
  });

  test('down: every request 503 until pass()', async () => {
    await proxy.setMode('down');
    for (let i = 0; i < 3; i++) assert.equal((await failure(get('k'))).status, 503);
    await proxy.pass();
    assert.equal(await get('k'), 'value');
  });

  test('hang: requests are never answered until pass()', async () => {
    await proxy.setMode('hang');
    const e = await failure(get('k', AbortSignal.timeout(300)));
    assert.match(e.name, /AbortError|TimeoutError/);
    proxy.clear();
    const pending = get('k'); // no timeout: released by pass()
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(proxy.requests.map((r) => [r.status, r.fault]), [[null, 'hang']]);
    await proxy.pass();
    assert.equal((await failure(pending)).code, 'ECONNRESET');
    assert.equal(await get('k'), 'value');
  });

  test('slow: answers are held for delayMs', async () => {
    await proxy.setMode('slow', { delayMs: 300 });
    const t0 = Date.now();
    assert.equal(await get('k'), 'value');
    assert.ok(Date.now() - t0 >= 280, `took ${Date.now() - t0} ms`);
    assert.equal(proxy.requests.at(-1)?.fault, 'slow');
    await proxy.pass();
    assert.equal(await get('k'), 'value');
    assert.equal(proxy.requests.at(-1)?.fault, undefined);
  });

  test('refuse: connection refused until pass(); reset: connection dropped', async () => {
    await proxy.setMode('refuse');
    assert.equal((await failure(get('k'))).code, 'ECONNREFUSED');
    const fresh = s3.client(proxy.endpoint, { maxAttempts: 1 });
    assert.equal((await failure(fresh.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' })))).code, 'ECONNREFUSED');
    await proxy.pass();
    assert.equal(await get('k'), 'value');
    await proxy.setMode('reset');
    assert.match((await failure(get('k'))).code ?? '', /ECONNRESET|EPIPE/);
    await proxy.pass();
    assert.equal(await get('k'), 'value');
  });

  test('upstream down: the client sees a dropped connection', async () => {
    await s3.stop();
    try {
      assert.match((await failure(get('k'))).code ?? '', /ECONNRESET|EPIPE/);
    } finally {
      await s3.restart();
    }
    assert.equal(await get('k'), 'value');
  });

  test('checkSignatures: right secret passes, wrong secret or key id is refused', async () => {
    proxy.checkSignatures(true);
    // Keys and queries that exercise canonical encoding.
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'sig/a b+c=ü~*.txt', Body: 'signed' }));
    const body = Readable.from([Buffer.from('str'), Buffer.from('eam')]);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'sig/stream', Body: body, ContentLength: 6 }));
    assert.equal(await get('sig/a b+c=ü~*.txt'), 'signed');
    const list = await client.send(
      new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'sig/a b+', MaxKeys: 1, StartAfter: 'sig/!' }),
    );
    assert.deepEqual(list.Contents?.map((o) => o.Key), ['sig/a b+c=ü~*.txt']);

    const badSecret = s3.client(proxy.endpoint, {
      maxAttempts: 1,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' },
    });
    const e1 = await failure(badSecret.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' })));
    assert.deepEqual([e1.name, e1.status], ['SignatureDoesNotMatch', 403]);
    const bigPut = badSecret.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'sig/big', Body: Buffer.alloc(256 * 1024) }));
    assert.equal((await failure(bigPut)).name, 'SignatureDoesNotMatch');
    assert.deepEqual(await s3.listKeys('sig/big'), []);
    const badKey = s3.client(proxy.endpoint, {
      maxAttempts: 1,
      credentials: { accessKeyId: 'SOMEONE', secretAccessKey: 'S3RVER' },
    });
    const e2 = await failure(badKey.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' })));
    assert.deepEqual([e2.name, e2.status], ['InvalidAccessKeyId', 403]);
    const unsigned = await fetch(`${proxy.endpoint}/${s3.bucket}/k`);
    assert.equal(unsigned.status, 403);
    assert.match(await unsigned.text(), /<Code>AccessDenied<\/Code>/);
    // s3rver alone accepts the wrong secret: that is why the proxy checks.
    const direct = s3.client(undefined, { credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'wrong' } });
    const out = await direct.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'k' }));
    assert.equal(await out.Body!.transformToString(), 'value');
  });
});
