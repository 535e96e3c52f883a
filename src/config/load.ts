// Finding, reading and parsing litefs.yml into a Config.

import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

import { LineCounter, parseDocument } from 'yaml';

import { expandEnv } from './expand.js';
import { describe, Source } from './fields.js';
import { readBackup, readLease } from './lease.js';
import { checkDirs, readData, readExec, readFuse, readHttp, readLog, readProxy, readTracing, type SectionContext } from './sections.js';
import { ConfigError, DEFAULTS, type Config } from './types.js';

export interface LoadOptions {
  /** Explicit file (`-config PATH`); otherwise the search order of findConfigPath. */
  path?: string;
  /** Leave `$VAR` text as written (`-no-expand-env`). */
  noExpandEnv?: boolean;
  /** Variables for expansion and S3 fallbacks; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface ParseOptions {
  /** File name used in messages and as configPath; default "litefs.yml". */
  file?: string;
  /** Directory for relative paths; default the directory of `file`. */
  baseDir?: string;
  noExpandEnv?: boolean;
  env?: NodeJS.ProcessEnv;
}

const TOP_KEYS = [
  'exit-on-error', 'skip-sync', 'strict-verify', 'exec', 'data', 'fuse', 'http', 'proxy', 'lease', 'backup', 'log', 'tracing',
] as const;

/** The places searched when no path is given, in order: ./litefs.yml, ~/litefs.yml, /etc/litefs.yml. */
export function configSearchPaths(): string[] {
  const paths = [path.resolve('litefs.yml')];
  let home = '';
  try {
    home = homedir();
  } catch {
    // no home directory: skip it
  }
  if (home) paths.push(path.join(home, 'litefs.yml'));
  paths.push('/etc/litefs.yml');
  return [...new Set(paths)];
}

function fileKind(p: string): 'file' | 'missing' | 'other' {
  try {
    return statSync(p).isFile() ? 'file' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    throw new ConfigError(`${p}: cannot read config file: ${(err as Error).message}`, { file: p });
  }
}

/**
 * Returns the absolute path of the config file: `explicit` when given (it must
 * exist), else the first of configSearchPaths() that exists.
 * Throws ConfigError listing the places searched when there is none.
 */
export function findConfigPath(explicit?: string): string {
  if (explicit !== undefined && explicit !== '') {
    const abs = path.resolve(explicit);
    const kind = fileKind(abs);
    if (kind === 'missing') throw new ConfigError(`${explicit}: config file not found`, { file: explicit });
    if (kind === 'other') throw new ConfigError(`${explicit}: not a regular file`, { file: explicit });
    return abs;
  }
  const searched = configSearchPaths();
  for (const p of searched) {
    const kind = fileKind(p);
    if (kind === 'file') return p;
    if (kind === 'other') throw new ConfigError(`${p}: not a regular file`, { file: p });
  }
  throw new ConfigError(`no config file found; searched ${searched.join(', ')}; pass -config PATH`);
}

/** Finds, reads, expands and validates the config file. Throws ConfigError. */
export function loadConfig(opts: LoadOptions = {}): Config {
  const file = findConfigPath(opts.path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config file: ${(err as Error).message}`, { file });
  }
  const parseOpts: ParseOptions = { file, baseDir: path.dirname(file) };
  if (opts.noExpandEnv !== undefined) parseOpts.noExpandEnv = opts.noExpandEnv;
  if (opts.env !== undefined) parseOpts.env = opts.env;
  return parseConfig(text, parseOpts);
}

/** Parses config text (already read from `opts.file`). Throws ConfigError. */
export function parseConfig(text: string, opts: ParseOptions = {}): Config {
  const file = opts.file ?? 'litefs.yml';
  const baseDir = opts.baseDir ?? path.dirname(path.resolve(file));
  const env = opts.env ?? process.env;
  const expanded = opts.noExpandEnv ? text : expandEnv(text, env, file);

  const lineCounter = new LineCounter();
  const doc = parseDocument(expanded, { lineCounter, merge: true, uniqueKeys: true, prettyErrors: true, strict: true });
  const syntax = doc.errors[0];
  if (syntax) {
    const pos = syntax.linePos?.[0] ?? lineCounter.linePos(syntax.pos[0]);
    const what = syntax.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?\s*$/, '');
    throw new ConfigError(`${file}: invalid YAML at line ${pos.line}, column ${pos.col}: ${what}`, { file, line: pos.line });
  }
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    throw new ConfigError(`${file}: invalid YAML: ${(err as Error).message.split('\n')[0]}`, { file });
  }

  const src = new Source(file, doc, lineCounter);
  if (root !== null && root !== undefined && (typeof root !== 'object' || Array.isArray(root))) {
    src.fail([], `expected a mapping of settings at the top level, got ${describe(root)}`);
  }
  const m = src.map([], root, TOP_KEYS) ?? {};
  const ctx: SectionContext = { src, baseDir };

  const exitOnError = src.bool(['exit-on-error'], m['exit-on-error']) ?? DEFAULTS.exitOnError;
  const skipSync = src.bool(['skip-sync'], m['skip-sync']) ?? DEFAULTS.skipSync;
  const strictVerify = src.bool(['strict-verify'], m['strict-verify']) ?? DEFAULTS.strictVerify;
  const exec = readExec(ctx, m['exec']);
  const data = readData(ctx, m['data']);
  const fuse = readFuse(ctx, m['fuse']);
  const http = readHttp(ctx, m['http']);
  const proxy = readProxy(ctx, m['proxy']);
  const lease = readLease(ctx, m['lease'], http);
  const backup = readBackup(ctx, m['backup'], env);
  const log = readLog(ctx, m['log']);
  const tracing = readTracing(ctx, m['tracing']);
  checkDirs(src, data, fuse);

  return {
    configPath: path.resolve(baseDir, file),
    exitOnError,
    skipSync,
    strictVerify,
    exec,
    data,
    fuse,
    http,
    lease,
    ...(proxy ? { proxy } : {}),
    log,
    tracing,
    ...(backup ? { backup } : {}),
  };
}
