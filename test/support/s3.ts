// s3rver (a fake S3 on the filesystem) as a child process on loopback for
// tests: its own temp dir and free port, started and stopped by PID. stop()
// SIGKILLs it and keeps the dir, so S3 is "down"; restart() brings it back on
// the same port and dir with every object intact. Faults s3rver cannot
// produce (503s, hangs, signature checks) live in s3-proxy.ts.
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';

import { freePort } from './cluster.js';
import { removeServerDir, ServerProcess, tempDirForServer } from './server-process.js';

export { startFaultProxy, type FaultProxy, type FaultMode, type ProxyRequest } from './s3-proxy.js';

export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';
export const S3RVER_REGION = 'us-east-1';
export const DEFAULT_BUCKET = 'litefs-test';

export interface S3rverHandle {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  /** The data directory (kept across stop/restart). */
  dir: string;
  /** PID of the s3rver process running now (changes on restart; -1 when stopped). */
  readonly pid: number;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** The bucket the helpers below default to: the first of opts.buckets. */
  bucket: string;
  createBucket(name: string): Promise<void>;
  /**
   * An S3 client for this server (or for `endpoint`, e.g. a fault proxy in
   * front of it) with the settings s3rver needs; `extra` overrides them
   * (maxAttempts, credentials...). destroy() closes the clients made here.
   */
  client(endpoint?: string, extra?: Partial<S3ClientConfig>): S3Client;
  /** SIGKILLs s3rver by PID and waits for it to exit; keeps the dir. */
  stop(): Promise<void>;
  /** Starts s3rver again on the same port and dir (stop() first if running). */
  restart(): Promise<void>;
  /** stop() and remove the dir if startS3rver made it. */
  destroy(): Promise<void>;
  /** Every key under `prefix`, following ListObjectsV2 continuation tokens (pages of `pageSize`, max 1000). */
  listKeys(prefix?: string, bucket?: string, pageSize?: number): Promise<string[]>;
  getObject(key: string, bucket?: string): Promise<Buffer>;
  putObject(key: string, body: string | Uint8Array, bucket?: string): Promise<void>;
  deleteObject(key: string, bucket?: string): Promise<void>;
  /** What s3rver printed (its request log is only on with LITEFS_TEST_TRACE). */
  readonly output: string;
}

const trace = !!process.env['LITEFS_TEST_TRACE'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The s3rver CLI script, found through the package's main entry. */
function s3rverBin(): string {
  const main = createRequire(import.meta.url).resolve('s3rver');
  return path.join(path.dirname(main), '..', 'bin', 's3rver.js');
}

/** A client configured the way s3rver needs. */
export function s3Client(endpoint: string, extra: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    endpoint,
    region: S3RVER_REGION,
    forcePathStyle: true,
    // Otherwise the SDK sends streamed bodies aws-chunked with trailing
    // checksums, which s3rver stores verbatim (framing and all).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY },
    ...extra,
  });
}

export async function startS3rver(opts: { dir?: string; buckets?: string[] } = {}): Promise<S3rverHandle> {
  const ownDir = !opts.dir;
  const dir = opts.dir ?? tempDirForServer('litefs-s3rver-');
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const buckets = opts.buckets ?? [DEFAULT_BUCKET];
  const args = [s3rverBin(), '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--no-vhost-buckets'];
  if (!trace) args.push('--silent');
  // s3rver encrypts ListObjectsV2 continuation tokens with DES, which
  // Node 17+ (OpenSSL 3) only offers with the legacy provider loaded.
  const env = { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' };

  const server = new ServerProcess(trace ? `s3rver:${port}` : undefined);
  const spawnOnce = () => server.spawn(process.execPath, args, { env });

  const launch = async (): Promise<void> => {
    const deadline = Date.now() + 15_000;
    let c = spawnOnce();
    let outputMark = server.output.length;
    while (Date.now() < deadline) {
      if (server.hasExited(c)) {
        // After a SIGKILL the port is normally free at once; retry the bind
        // anyway in case a lingering socket still holds it.
        if (server.output.slice(outputMark).includes('EADDRINUSE')) {
          await sleep(100);
          outputMark = server.output.length;
          c = spawnOnce();
          continue;
        }
        throw new Error(`s3rver exited before it answered (${c.exitCode ?? c.signalCode}): ${server.output.slice(-2000)}`);
      }
      try {
        // Any HTTP answer will do: it means the server is accepting requests.
        const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    await server.stop('SIGKILL');
    throw new Error(`s3rver at ${endpoint} did not answer within 15 s: ${server.output.slice(-2000)}`);
  };

  const stop = async (): Promise<void> => {
    await server.stop('SIGKILL');
    server.child = undefined;
  };

  const clients = new Set<S3Client>();
  const makeClient = (ep = endpoint, extra: Partial<S3ClientConfig> = {}): S3Client => {
    const cl = s3Client(ep, extra);
    clients.add(cl);
    return cl;
  };
  const helper = makeClient();

  const handle: S3rverHandle = {
    endpoint,
    port,
    dir,
    get pid() {
      return server.child?.pid ?? -1;
    },
    accessKeyId: S3RVER_ACCESS_KEY_ID,
    secretAccessKey: S3RVER_SECRET_ACCESS_KEY,
    region: S3RVER_REGION,
    bucket: buckets[0] ?? DEFAULT_BUCKET,
    async createBucket(name) {
      try {
        await helper.send(new CreateBucketCommand({ Bucket: name }));
      } catch (err) {
        // Restarting on an existing dir: the bucket is already there.
        const n = (err as { name?: string }).name;
        if (n !== 'BucketAlreadyOwnedByYou' && n !== 'BucketAlreadyExists') throw err;
      }
    },
    client: makeClient,
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async destroy() {
      for (const cl of clients) cl.destroy();
      clients.clear();
      await stop();
      if (ownDir) removeServerDir(dir);
    },
    async listKeys(prefix = '', bucket = handle.bucket, pageSize?: number) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const out = await helper.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: pageSize }),
        );
        for (const o of out.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },
    async getObject(key, bucket = handle.bucket) {
      const out = await helper.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await out.Body!.transformToByteArray());
    },
    async putObject(key, body, bucket = handle.bucket) {
      // An explicit length: the SDK takes an empty string for a stream of unknown length.
      const ContentLength = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      await helper.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength }));
    },
    async deleteObject(key, bucket = handle.bucket) {
      await helper.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    get output() {
      return server.output;
    },
  };

  try {
    await launch();
    for (const b of buckets) await handle.createBucket(b);
  } catch (err) {
    await handle.destroy();
    throw err;
  }
  return handle;
}
