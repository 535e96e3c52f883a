// The ObjectStore on S3 (or anything that speaks its API) through the AWS
// SDK. Errors become one-line ObjectStoreErrors naming s3://bucket/key.
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import type { ListObjectsV2CommandOutput, S3Client as S3ClientType } from '@aws-sdk/client-s3';
import type { BackupConfig } from '../config/index.js';
import { ObjectStoreError, type ObjectStore, type StoredObject } from './object-store.js';

// The SDK warns on every start that future versions need Node 22; the engines field already says what we run on.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
// require(), not import: imported, this CommonJS bundle is first scanned whole for its export names (~50 ms of every start).
const { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } =
  createRequire(import.meta.url)('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');

/** S3 error codes that retrying will not fix. */
const PERMANENT = new Set([
  'NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidBucketName', 'AllAccessDisabled',
  'AuthorizationHeaderMalformed', 'PermanentRedirect', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError',
]);

/** How long a connection may stay silent before the request fails (a hung server). */
const IDLE_TIMEOUT_MS = 15_000;
const MAX_SOCKETS = 64;

export class S3ObjectStore implements ObjectStore {
  readonly label: string;
  private readonly client: S3ClientType;
  private readonly bucket: string;

  constructor(cfg: Pick<BackupConfig, 'bucket' | 'endpoint' | 'region' | 'forcePathStyle' | 'accessKeyId' | 'secretAccessKey'>, opts: { maxAttempts?: number } = {}) {
    this.bucket = cfg.bucket;
    this.label = `s3://${cfg.bucket}`;
    this.client = new S3Client({
      region: cfg.region,
      endpoint: cfg.endpoint,
      forcePathStyle: cfg.forcePathStyle,
      ...(cfg.accessKeyId && cfg.secretAccessKey ? { credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } } : {}),
      // Checksums only where S3 demands them: our objects carry their own
      // CRCs, and S3-compatible servers mishandle the streamed form.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: opts.maxAttempts ?? 3,
      cacheMiddleware: true, // a restore sends thousands of GETs: build the middleware stack once
      // Kept-alive sockets: a restore makes thousands of small requests.
      requestHandler: {
        httpAgent: new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
        httpsAgent: new https.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
        requestTimeout: IDLE_TIMEOUT_MS,
        connectionTimeout: 5000,
      },
    });
  }

  private fail(where: string, err: unknown): ObjectStoreError {
    const e = err as { name?: string; Code?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    let code = e.Code ?? e.name ?? e.code ?? 'Error';
    if (code === 'Error' || code === 'Unknown' || code === 'UnknownError') code = status ? `HTTP ${status}` : (e.code ?? 'Error');
    const notFound = code === 'NoSuchKey' || code === 'NotFound' || (status === 404 && code !== 'NoSuchBucket');
    const detail = (e.message ?? String(err)).split('\n')[0]!;
    const text = detail && detail !== code && detail !== 'UnknownError' ? `${code}: ${detail}` : code;
    return new ObjectStoreError(`${this.label}/${where}: ${text}`, code, PERMANENT.has(code) || notFound, notFound);
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    for (let token: string | undefined, page: ListObjectsV2CommandOutput; ; token = page.NextContinuationToken) {
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      } catch (err) {
        throw this.fail(prefix, err);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0 });
      }
      if (!page.IsTruncated || !page.NextContinuationToken) break;
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async listPrefixes(prefix: string): Promise<string[]> {
    const out: string[] = [];
    for (let token: string | undefined, page: ListObjectsV2CommandOutput; ; token = page.NextContinuationToken) {
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
      } catch (err) {
        throw this.fail(prefix, err);
      }
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) out.push(p.Prefix);
      if (!page.IsTruncated || !page.NextContinuationToken) break;
    }
    if (out.length > 0) return out.sort();
    // Some S3-compatible servers (s3rver) answer a delimited listing of nested keys with nothing: derive it from a full one.
    const found = new Set<string>();
    for (const o of await this.list(prefix)) {
      const slash = o.key.indexOf('/', prefix.length);
      if (slash >= 0) found.add(o.key.slice(0, slash + 1));
    }
    return [...found].sort();
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Buffer> {
    // Not the SDK's transformToByteArray(): it gathers the body into zeroed memory, a third of a restore's segment decoding time.
    const chunks: Buffer[] = [];
    for await (const chunk of await this.getStream(key, range)) chunks.push(chunk);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  async getStream(key: string, range?: { start: number; end: number }): Promise<AsyncIterable<Buffer>> {
    let body: AsyncIterable<Uint8Array>;
    try {
      const Range = range ? `bytes=${range.start}-${range.end - 1}` : undefined;
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range }));
      if (!res.Body) throw new Error('empty response body');
      body = res.Body as AsyncIterable<Uint8Array>;
    } catch (err) {
      throw this.fail(key, err);
    }
    const fail = (err: unknown) => this.fail(key, err);
    return (async function* () {
      try {
        for await (const chunk of body) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      } catch (err) {
        throw fail(err);
      }
    })();
  }

  async put(key: string, body: Buffer, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length }), { abortSignal: signal });
    } catch (err) {
      throw this.fail(key, err);
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      try {
        const res = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
        const first = res.Errors?.[0];
        if (first) throw Object.assign(new Error(first.Message ?? 'delete failed'), { name: first.Code ?? 'Error' });
      } catch (err) {
        throw this.fail(batch[0]!, err);
      }
    }
  }

  close(): void {
    this.client.destroy();
  }
}
