// Readers for the simple sections: exec, data, fuse, http, proxy, log, tracing.
// Each takes the raw YAML value of its section and returns the typed section
// with defaults filled in.

import { isSameOrInside, parseHostPort, resolveDir } from './addr.js';
import type { KeyPath, Source } from './fields.js';
import { describe } from './fields.js';
import {
  DEFAULTS, LOG_FORMATS,
  type DataConfig, type ExecConfig, type FuseConfig, type HttpConfig, type LogConfig, type ProxyConfig, type TracingConfig,
} from './types.js';

export interface SectionContext {
  src: Source;
  /** Directory that relative paths are resolved against (the config file's). */
  baseDir: string;
}

/** Checks `[host]:port` and returns it unchanged. */
export function hostPort(src: Source, path: KeyPath, v: string): string {
  if (!parseHostPort(v)) src.fail(path, `expected an address like ":20202" or "127.0.0.1:20202" ([host]:port), got ${describe(v)}`);
  return v;
}

const EXEC_KEYS = ['cmd', 'if-candidate'] as const;

export function readExec(ctx: SectionContext, v: unknown): ExecConfig[] {
  const src: Source = ctx.src;
  if (v === undefined || v === null || v === '') return [];
  if (typeof v === 'string') return [{ cmd: v, ifCandidate: false }];
  if (!Array.isArray(v)) {
    src.fail(['exec'], `expected a command string or a list of {cmd, if-candidate} entries, got ${describe(v)}`);
  }
  return v.map((entry: unknown, i): ExecConfig => {
    const path = ['exec', i];
    if (typeof entry === 'string') {
      if (entry === '') src.fail(path, 'expected a command, got ""');
      return { cmd: entry, ifCandidate: false };
    }
    const m = src.map(path, entry, EXEC_KEYS);
    const cmd = m && src.str([...path, 'cmd'], m['cmd']);
    if (!m || cmd === undefined) src.fail([...path, 'cmd'], 'expected a command (each exec entry needs "cmd")');
    return { cmd, ifCandidate: src.bool([...path, 'if-candidate'], m['if-candidate']) ?? false };
  });
}

const DATA_KEYS = ['dir', 'compress', 'retention', 'retention-monitor-interval'] as const;

export function readData(ctx: SectionContext, v: unknown): DataConfig {
  const { baseDir } = ctx;
  const src: Source = ctx.src;
  const m = src.map(['data'], v, DATA_KEYS) ?? {};
  const d = DEFAULTS.data;
  const dir = src.str(['data', 'dir'], m['dir']);
  return {
    dir: dir === undefined ? d.dir : resolveDir(dir, baseDir),
    compress: src.bool(['data', 'compress'], m['compress']) ?? d.compress,
    retention: src.duration(['data', 'retention'], m['retention']) ?? d.retention,
    retentionMonitorInterval: src.duration(['data', 'retention-monitor-interval'], m['retention-monitor-interval'], 1) ?? d.retentionMonitorInterval,
  };
}

const FUSE_KEYS = ['dir', 'allow-other', 'debug', 'cache-journals'] as const;

export function readFuse(ctx: SectionContext, v: unknown): FuseConfig {
  const { baseDir } = ctx;
  const src: Source = ctx.src;
  const m = src.map(['fuse'], v, FUSE_KEYS) ?? {};
  const d = DEFAULTS.fuse;
  const dir = src.str(['fuse', 'dir'], m['dir']);
  return {
    dir: dir === undefined ? d.dir : resolveDir(dir, baseDir),
    allowOther: src.bool(['fuse', 'allow-other'], m['allow-other']) ?? d.allowOther,
    debug: src.bool(['fuse', 'debug'], m['debug']) ?? d.debug,
    cacheJournals: src.bool(['fuse', 'cache-journals'], m['cache-journals']) ?? d.cacheJournals,
  };
}

/** fuse.dir and data.dir must be separate trees. */
export function checkDirs(src: Source, data: DataConfig, fuse: FuseConfig): void {
  if (data.dir === fuse.dir) {
    src.fail(['fuse', 'dir'], `"${fuse.dir}" is the same directory as data.dir; the mount and the data directory must be different`);
  }
  if (isSameOrInside(fuse.dir, data.dir)) {
    src.fail(['fuse', 'dir'], `"${fuse.dir}" is inside data.dir "${data.dir}"; the mount and the data directory must not contain each other`);
  }
  if (isSameOrInside(data.dir, fuse.dir)) {
    src.fail(['data', 'dir'], `"${data.dir}" is inside fuse.dir "${fuse.dir}"; the mount and the data directory must not contain each other`);
  }
}

const HTTP_KEYS = ['addr', 'snapshot-timeout'] as const;

export function readHttp(ctx: SectionContext, v: unknown): HttpConfig {
  const src: Source = ctx.src;
  const m = src.map(['http'], v, HTTP_KEYS) ?? {};
  const addr = src.str(['http', 'addr'], m['addr']);
  return {
    addr: addr === undefined ? DEFAULTS.http.addr : hostPort(src, ['http', 'addr'], addr),
    snapshotTimeout: src.duration(['http', 'snapshot-timeout'], m['snapshot-timeout']) ?? DEFAULTS.http.snapshotTimeout,
  };
}

const PROXY_KEYS = [
  'addr', 'target', 'db', 'debug', 'max-lag', 'passthrough', 'always-forward', 'primary-redirect-timeout',
  'read-timeout', 'read-header-timeout', 'write-timeout', 'idle-timeout',
] as const;

/** The proxy runs only when `proxy.addr` is set (as in LiteFS); then target and db are required. */
export function readProxy(ctx: SectionContext, v: unknown): ProxyConfig | undefined {
  const src: Source = ctx.src;
  const m = src.map(['proxy'], v, PROXY_KEYS) ?? {};
  const p = (k: string) => ['proxy', k];
  const d = DEFAULTS.proxy;
  const addr = src.str(p('addr'), m['addr']);
  const target = src.str(p('target'), m['target']);
  const db = src.str(p('db'), m['db']);
  const dur = (k: string, def: number) => src.duration(p(k), m[k]) ?? def;
  const proxy = {
    debug: src.bool(p('debug'), m['debug']) ?? d.debug,
    maxLag: dur('max-lag', d.maxLag),
    passthrough: src.strList(p('passthrough'), m['passthrough']) ?? [],
    alwaysForward: src.strList(p('always-forward'), m['always-forward']) ?? [],
    primaryRedirectTimeout: dur('primary-redirect-timeout', d.primaryRedirectTimeout),
    readTimeout: dur('read-timeout', d.readTimeout),
    readHeaderTimeout: dur('read-header-timeout', d.readHeaderTimeout),
    writeTimeout: dur('write-timeout', d.writeTimeout),
    idleTimeout: dur('idle-timeout', d.idleTimeout),
  };
  if (addr === undefined) return undefined;
  hostPort(src, p('addr'), addr);
  if (target === undefined) src.fail(p('target'), 'required when proxy.addr is set: the application\'s address, e.g. "localhost:8081"');
  if (!/^[^\s/]*:\d{1,5}$/.test(target) && !/^\[[^\]]+\]:\d{1,5}$/.test(target)) {
    src.fail(p('target'), `expected the application's host:port, e.g. "localhost:8081", got ${describe(target)}`);
  }
  if (db === undefined) src.fail(p('db'), 'required when proxy.addr is set: the database name used to track TXIDs, e.g. "my.db"');
  return { addr, target, db, ...proxy };
}

const LOG_KEYS = ['format', 'timestamp', 'debug'] as const;

export function readLog(ctx: SectionContext, v: unknown): LogConfig {
  const src: Source = ctx.src;
  const m = src.map(['log'], v, LOG_KEYS) ?? {};
  const d = DEFAULTS.log;
  return {
    format: src.oneOf(['log', 'format'], m['format'], LOG_FORMATS) ?? d.format,
    timestamp: src.bool(['log', 'timestamp'], m['timestamp']) ?? d.timestamp,
    debug: src.bool(['log', 'debug'], m['debug']) ?? d.debug,
  };
}

const TRACING_KEYS = ['enabled', 'path', 'max-size', 'max-count', 'compress'] as const;

export function readTracing(ctx: SectionContext, v: unknown): TracingConfig {
  const { baseDir } = ctx;
  const src: Source = ctx.src;
  const m = src.map(['tracing'], v, TRACING_KEYS) ?? {};
  const d = DEFAULTS.tracing;
  const path = src.str(['tracing', 'path'], m['path']);
  return {
    enabled: src.bool(['tracing', 'enabled'], m['enabled']) ?? d.enabled,
    path: path === undefined ? undefined : resolveDir(path, baseDir),
    maxSize: src.int(['tracing', 'max-size'], m['max-size'], 1) ?? d.maxSize,
    maxCount: src.int(['tracing', 'max-count'], m['max-count'], 0) ?? d.maxCount,
    compress: src.bool(['tracing', 'compress'], m['compress']) ?? d.compress,
  };
}
