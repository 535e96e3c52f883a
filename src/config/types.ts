// The typed configuration of one node, as read from litefs.yml.
//
// Field names are the camelCase form of the YAML keys (`advertise-url` →
// `advertiseUrl`). Every duration is a number of milliseconds. docs/config.md
// describes each key; keep the two in step.

export const LEASE_TYPES = ['static', 'consul', 'etcd'] as const;
export type LeaseType = (typeof LEASE_TYPES)[number];

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export const BACKUP_TYPES = ['s3'] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];

/** One entry of `exec`. All but the last run to completion; the last is the supervised app. */
export interface ExecConfig {
  cmd: string;
  /** Run this command only on a node that is a lease candidate. */
  ifCandidate: boolean;
}

export interface DataConfig {
  /** Absolute directory of the real database and transaction files. */
  dir: string;
  /** Compress transaction files. */
  compress: boolean;
  /** How long transaction files are kept (ms); the newest is always kept. */
  retention: number;
  /** How often retention is enforced (ms). */
  retentionMonitorInterval: number;
}

export interface FuseConfig {
  /** Absolute mount directory that applications use. */
  dir: string;
  /** Let users other than the mounting one access the mount (needs user_allow_other in /etc/fuse.conf). */
  allowOther: boolean;
  /** Log every FUSE call. */
  debug: boolean;
  /**
   * Keep the -wal and -journal in the kernel's page cache (reads of recent
   * pages on the primary stay cached, but each WAL page write becomes two
   * FUSE requests); off by default: they bypass it (docs/fuse.md).
   */
  cacheJournals: boolean;
}

export interface HttpConfig {
  /** Listen address of the node API, `[host]:port`. */
  addr: string;
  /** Longest time to send one snapshot on a stream (ms); 0 means no limit. */
  snapshotTimeout: number;
}

export interface ConsulConfig {
  /** Consul base URL; a password in the URL is used as the ACL token. */
  url: string;
  key: string;
  /** Session TTL (ms). */
  ttl: number;
  /** Session lock-delay (ms). */
  lockDelay: number;
}

/** Our addition: an etcd v3 lease. */
export interface EtcdConfig {
  /** Client URLs, e.g. `http://127.0.0.1:2379`. */
  endpoints: string[];
  key: string;
  /** Lease TTL (ms); etcd counts whole seconds. */
  ttl: number;
  /** Wait after a lease expired before acquiring (ms); enforced by our client. */
  lockDelay: number;
}

export interface LeaseConfig {
  type: LeaseType;
  /** Name other nodes and `.primary` show for this node (for a static replica: the primary's). */
  hostname: string;
  /** URL other nodes use to reach this node's API (for a static replica: the primary's). */
  advertiseUrl: string;
  /** May become primary. With `static`, true means "this node is the primary". */
  candidate: boolean;
  /** Once synced, ask to become primary (a candidate only). */
  promote: boolean;
  /** Wait after losing the primary before reconnecting or taking over (ms). */
  reconnectDelay: number;
  /** Wait after a forced demotion before trying to become primary again (ms). */
  demoteDelay: number;
  /** Replicate only these databases; undefined means all. */
  databases: string[] | undefined;
  /** Present when the file has a `lease.consul` section or type is consul. */
  consul?: ConsulConfig;
  /** Present when the file has a `lease.etcd` section or type is etcd. */
  etcd?: EtcdConfig;
}

export interface ProxyConfig {
  /** Listen address, `[host]:port`. */
  addr: string;
  /** The application, `host:port`. */
  target: string;
  /** Database whose TXID is tracked for read-your-writes. */
  db: string;
  debug: boolean;
  /** A replica further behind than this (ms) forwards reads to the primary. */
  maxLag: number;
  /** Path patterns (`*` wildcard) passed to the target untouched. */
  passthrough: string[];
  /** Path patterns always forwarded to the primary. */
  alwaysForward: string[];
  /** How long a write waits for a primary to be known (ms). */
  primaryRedirectTimeout: number;
  readTimeout: number;
  readHeaderTimeout: number;
  writeTimeout: number;
  idleTimeout: number;
}

export interface LogConfig {
  format: LogFormat;
  timestamp: boolean;
  debug: boolean;
}

/** LiteFS's on-disk trace log; accepted so LiteFS files load. */
export interface TracingConfig {
  enabled: boolean;
  path: string | undefined;
  /** Megabytes per file before rolling. */
  maxSize: number;
  maxCount: number;
  compress: boolean;
}

/** Our addition: transaction-log backup to S3 (Litestream's key names). */
export interface BackupConfig {
  type: BackupType;
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slash ('' = bucket root). */
  path: string;
  /** Custom endpoint (MinIO, s3rver, ...); undefined means AWS. */
  endpoint: string | undefined;
  region: string;
  forcePathStyle: boolean;
  /** Undefined leaves credentials to the SDK's default chain. */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /** How often new transactions are uploaded (ms). */
  syncInterval: number;
  /** How often a full snapshot is written (ms). */
  snapshotInterval: number;
  /** How long snapshots and segments are kept (ms). */
  retention: number;
}

export interface Config {
  /** Absolute path of the file this was loaded from. */
  configPath: string;
  exitOnError: boolean;
  skipSync: boolean;
  strictVerify: boolean;
  exec: ExecConfig[];
  data: DataConfig;
  fuse: FuseConfig;
  http: HttpConfig;
  lease: LeaseConfig;
  /** Undefined unless `proxy.addr` is set. */
  proxy?: ProxyConfig;
  log: LogConfig;
  tracing: TracingConfig;
  /** Undefined unless the file has a `backup` section. */
  backup?: BackupConfig;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Default values (durations in ms). */
export const DEFAULTS = {
  exitOnError: true,
  skipSync: false,
  strictVerify: false,
  data: { dir: '/var/lib/litefs', compress: true, retention: 10 * MINUTE, retentionMonitorInterval: MINUTE },
  fuse: { dir: '/litefs', allowOther: false, debug: false, cacheJournals: false },
  http: { addr: ':20202', snapshotTimeout: 0 },
  lease: { candidate: true, promote: false, reconnectDelay: SECOND, demoteDelay: 10 * SECOND },
  consul: { key: 'litefs/primary', ttl: 10 * SECOND, lockDelay: SECOND },
  etcd: { key: 'litefs/primary', ttl: 10 * SECOND, lockDelay: SECOND },
  proxy: {
    debug: false, maxLag: 10 * SECOND, primaryRedirectTimeout: 5 * SECOND,
    readTimeout: 0, readHeaderTimeout: 10 * SECOND, writeTimeout: 0, idleTimeout: 30 * SECOND,
  },
  log: { format: 'text' as LogFormat, timestamp: true, debug: false },
  tracing: { enabled: true, maxSize: 64, maxCount: 8, compress: true },
  backup: { region: 'us-east-1', syncInterval: SECOND, snapshotInterval: 24 * HOUR, retention: 24 * HOUR },
} as const;

/**
 * A configuration problem. The message is one line: the file, the key path
 * and what was expected, e.g.
 * `litefs.yml: lease.consul.ttl: expected a duration like "10s", got "ten" (line 7)`.
 */
export class ConfigError extends Error {
  /** The config file concerned, when there is one. */
  readonly file: string | undefined;
  /** Dotted key path, e.g. `lease.consul.ttl` or `exec[1].cmd`. */
  readonly key: string | undefined;
  /** 1-based line in the file, when known. */
  readonly line: number | undefined;

  constructor(message: string, details: { file?: string; key?: string; line?: number } = {}) {
    super(message.replace(/\s*\n\s*/g, ' '));
    this.name = 'ConfigError';
    this.file = details.file;
    this.key = details.key;
    this.line = details.line;
  }
}
