// Readers for the `lease` section (static, consul, and our etcd) and our
// `backup` section (S3, with LITEFS_S3_* / AWS_* environment fallbacks).

import { hostname as osHostname } from 'node:os';

import { isHttpUrl, parseHostPort } from './addr.js';
import type { Env } from './expand.js';
import { describe, type Source } from './fields.js';
import type { SectionContext } from './sections.js';
import {
  BACKUP_TYPES, DEFAULTS, LEASE_TYPES,
  type BackupConfig, type ConsulConfig, type EtcdConfig, type HttpConfig, type LeaseConfig,
} from './types.js';

const LEASE_KEYS = [
  'type', 'hostname', 'advertise-url', 'candidate', 'promote', 'reconnect-delay', 'demote-delay', 'databases', 'consul', 'etcd',
] as const;
const CONSUL_KEYS = ['url', 'key', 'ttl', 'lock-delay'] as const;
const ETCD_KEYS = ['endpoints', 'key', 'ttl', 'lock-delay'] as const;

function readConsul(src: Source, v: unknown, required: boolean): ConsulConfig | undefined {
  const path = ['lease', 'consul'];
  const m = src.map(path, v, CONSUL_KEYS);
  if (!m && !required) return undefined;
  const c = m ?? {};
  const d = DEFAULTS.consul;
  const url = src.str([...path, 'url'], c['url']);
  if (url === undefined) {
    if (required) src.fail([...path, 'url'], 'required when lease.type is consul: the Consul base URL, e.g. "http://localhost:8500"');
  } else if (!isHttpUrl(url)) {
    src.fail([...path, 'url'], `expected an http(s) URL like "http://localhost:8500", got ${describe(url)}`);
  }
  // Consul's own limits on a session: TTL 10s..24h, lock-delay at most 60s.
  const ttl = src.duration([...path, 'ttl'], c['ttl'], 1) ?? d.ttl;
  if (ttl < 10_000 || ttl > 86_400_000) src.fail([...path, 'ttl'], `expected a duration from 10s to 24h (Consul's limits on a session TTL), got ${describe(c['ttl'])}`);
  const lockDelay = src.duration([...path, 'lock-delay'], c['lock-delay']) ?? d.lockDelay;
  if (lockDelay > 60_000) src.fail([...path, 'lock-delay'], `expected a duration of at most 60s (Consul's limit), got ${describe(c['lock-delay'])}`);
  return { url: url ?? '', key: src.str([...path, 'key'], c['key']) ?? d.key, ttl, lockDelay };
}

function readEtcd(src: Source, v: unknown, required: boolean): EtcdConfig | undefined {
  const path = ['lease', 'etcd'];
  const m = src.map(path, v, ETCD_KEYS);
  if (!m && !required) return undefined;
  const e = m ?? {};
  const d = DEFAULTS.etcd;
  // A single string may hold several comma-separated endpoints (as etcdctl's --endpoints).
  const raw = src.strList([...path, 'endpoints'], e['endpoints']) ?? [];
  const endpoints = raw.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '')
    .map((s) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `http://${s}`));
  if (required && endpoints.length === 0) {
    src.fail([...path, 'endpoints'], 'required when lease.type is etcd: a list of client URLs, e.g. ["http://127.0.0.1:2379"]');
  }
  for (const url of endpoints) {
    if (!isHttpUrl(url)) src.fail([...path, 'endpoints'], `expected http(s) URLs like "http://127.0.0.1:2379", got ${describe(url)}`);
  }
  return {
    endpoints,
    key: src.str([...path, 'key'], e['key']) ?? d.key,
    ttl: src.duration([...path, 'ttl'], e['ttl'], 1000) ?? d.ttl,
    lockDelay: src.duration([...path, 'lock-delay'], e['lock-delay']) ?? d.lockDelay,
  };
}

export function readLease(ctx: SectionContext, v: unknown, http: HttpConfig): LeaseConfig {
  const src: Source = ctx.src;
  const m = src.map(['lease'], v, LEASE_KEYS) ?? {};
  const p = (k: string) => ['lease', k];
  const type = src.oneOf(p('type'), m['type'], LEASE_TYPES);
  if (type === undefined) src.fail(p('type'), `required: expected one of ${LEASE_TYPES.join(', ')}`);
  const d = DEFAULTS.lease;
  const candidate = src.bool(p('candidate'), m['candidate']) ?? d.candidate;

  let advertiseUrl = src.str(p('advertise-url'), m['advertise-url']);
  if (advertiseUrl !== undefined && !isHttpUrl(advertiseUrl)) {
    src.fail(p('advertise-url'), `expected an http(s) URL like "http://myhost:20202", got ${describe(advertiseUrl)}`);
  }
  let hostname = src.str(p('hostname'), m['hostname']);
  if (type === 'static' && !candidate) {
    // A static replica names the primary: its hostname and API URL.
    if (advertiseUrl === undefined) {
      src.fail(p('advertise-url'), 'required with lease.type static and candidate: false: the primary\'s API URL, e.g. "http://primary:20202"');
    }
    hostname ??= new URL(advertiseUrl).hostname;
  }
  hostname ??= osHostname();
  advertiseUrl ??= `http://${hostname}:${parseHostPort(http.addr)?.port ?? 20202}`;

  const databases = src.strList(p('databases'), m['databases']);
  const lease: LeaseConfig = {
    type,
    hostname,
    advertiseUrl,
    candidate,
    promote: src.bool(p('promote'), m['promote']) ?? d.promote,
    reconnectDelay: src.duration(p('reconnect-delay'), m['reconnect-delay']) ?? d.reconnectDelay,
    demoteDelay: src.duration(p('demote-delay'), m['demote-delay']) ?? d.demoteDelay,
    databases: databases && databases.length > 0 ? databases : undefined,
  };
  const consul = readConsul(src, m['consul'], type === 'consul');
  if (consul) lease.consul = consul;
  const etcd = readEtcd(src, m['etcd'], type === 'etcd');
  if (etcd) lease.etcd = etcd;
  return lease;
}

const BACKUP_KEYS = [
  'type', 'bucket', 'path', 'endpoint', 'region', 'force-path-style', 'access-key-id', 'secret-access-key',
  'sync-interval', 'snapshot-interval', 'retention',
] as const;

/** First non-empty value among the named environment variables. */
function fromEnv(env: Env, ...names: string[]): string | undefined {
  for (const n of names) if (env[n]) return env[n];
  return undefined;
}

export function readBackup(ctx: SectionContext, v: unknown, env: Env): BackupConfig | undefined {
  const src: Source = ctx.src;
  if (v === undefined || v === null) return undefined;
  const p = (k: string) => ['backup', k];
  if (typeof v !== 'object' || Array.isArray(v)) src.map(['backup'], v, BACKUP_KEYS); // throws: not a mapping
  // The type first: a LiteFS "file" or "litefs-cloud" backup has other keys.
  const rawType = (v as Record<string, unknown>)['type'];
  const type = src.str(p('type'), rawType);
  if (type === undefined) src.fail(p('type'), `required: expected one of ${BACKUP_TYPES.join(', ')}`);
  if (type === 'file' || type === 'litefs-cloud') {
    src.fail(p('type'), `expected one of ${BACKUP_TYPES.join(', ')}, got "${type}" (LiteFS's "${type}" backup is not supported; see docs/config.md)`);
  }
  const m = src.map(['backup'], v, BACKUP_KEYS) ?? {};
  src.oneOf(p('type'), type, BACKUP_TYPES);
  const d = DEFAULTS.backup;

  const bucket = src.str(p('bucket'), m['bucket']) ?? fromEnv(env, 'LITEFS_S3_BUCKET');
  if (bucket === undefined) src.fail(p('bucket'), 'required: the S3 bucket name (or set LITEFS_S3_BUCKET)');
  const endpoint = src.str(p('endpoint'), m['endpoint']) ?? fromEnv(env, 'LITEFS_S3_ENDPOINT');
  if (endpoint !== undefined && !isHttpUrl(endpoint)) {
    src.fail(p('endpoint'), `expected an http(s) URL like "http://127.0.0.1:9000", got ${describe(endpoint)}`);
  }
  const accessKeyId = src.str(p('access-key-id'), m['access-key-id']) ?? fromEnv(env, 'LITEFS_S3_ACCESS_KEY_ID', 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = src.str(p('secret-access-key'), m['secret-access-key'])
    ?? fromEnv(env, 'LITEFS_S3_SECRET_ACCESS_KEY', 'AWS_SECRET_ACCESS_KEY');
  if (accessKeyId !== undefined && secretAccessKey === undefined) {
    src.fail(p('secret-access-key'), 'required when an access key id is given (or set LITEFS_S3_SECRET_ACCESS_KEY / AWS_SECRET_ACCESS_KEY)');
  }
  if (secretAccessKey !== undefined && accessKeyId === undefined) {
    src.fail(p('access-key-id'), 'required when a secret access key is given (or set LITEFS_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID)');
  }
  return {
    type: 's3',
    bucket,
    path: (src.str(p('path'), m['path']) ?? '').replace(/^\/+|\/+$/g, ''),
    endpoint,
    region: src.str(p('region'), m['region']) ?? fromEnv(env, 'LITEFS_S3_REGION', 'AWS_REGION') ?? d.region,
    forcePathStyle: src.bool(p('force-path-style'), m['force-path-style']) ?? endpoint !== undefined,
    accessKeyId,
    secretAccessKey,
    syncInterval: src.duration(p('sync-interval'), m['sync-interval'], 1) ?? d.syncInterval,
    snapshotInterval: src.duration(p('snapshot-interval'), m['snapshot-interval'], 1) ?? d.snapshotInterval,
    retention: src.duration(p('retention'), m['retention']) ?? d.retention,
  };
}
