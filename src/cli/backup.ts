// litefs restore / litefs backups: read a database's backup in the bucket
// that the config's `backup:` section names. restore rebuilds the database
// into a file (src/backup/restore.ts); backups lists what is there.
import fs from 'node:fs';
import { listBackedUpDatabases, readCatalog, RestorePlanError, type RestoreTarget } from '../backup/catalog.js';
import { BackupLayout, hex16 } from '../backup/layout.js';
import type { ObjectStore } from '../backup/object-store.js';
import { RestoreError, restoreDatabase } from '../backup/restore.js';
import { ConfigError, loadConfig, type BackupConfig } from '../config/index.js';
import { formatPosition } from '../txlog/checksum.js';
import { parseFlags, UsageError } from './flags.js';

const RESTORE_FLAGS = {
  config: 'string', o: 'string', txid: 'string', timestamp: 'string', 'if-db-not-exists': 'boolean', 'if-replica-exists': 'boolean', parallelism: 'string',
} as const;
const BACKUPS_FLAGS = { config: 'string', json: 'boolean' } as const;

const HEX_TXID = /^[0-9a-fA-F]{16}$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** A TXID as 16 hex digits (as printed everywhere) or as a decimal number. */
export function parseTxid(text: string): number | undefined {
  const n = HEX_TXID.test(text) ? Number.parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
  return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}

/** An RFC 3339 date-time as ms since the epoch (fractions below a ms are dropped), or undefined. */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Number((m[7] ?? '0').padEnd(3, '0').slice(0, 3));
  const local = Date.UTC(y, mo - 1, d, h, mi, Math.min(s, 59), ms); // a leap second counts as :59
  const check = new Date(local);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d || h > 23 || mi > 59 || s > 60) return undefined;
  const offset = m[8] ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11])) * 60_000;
  return local - offset;
}

/** The config's backup section, or a one-line error saying why there is none. */
function backupConfig(configPath: string | undefined): BackupConfig {
  const cfg = loadConfig(configPath === undefined ? {} : { path: configPath });
  if (!cfg.backup) throw new ConfigError(`${cfg.configPath}: no backup: section, so no bucket to read`, { file: cfg.configPath });
  return cfg.backup;
}

/** Loaded on use: the AWS SDK takes a third of a second to load, which flag errors need not wait for. */
async function openStore(cfg: BackupConfig): Promise<ObjectStore & { close(): void }> {
  const { S3ObjectStore } = await import('../backup/s3.js');
  return new S3ObjectStore(cfg);
}

function location(store: ObjectStore, prefix: string): string {
  return `${store.label}/${prefix}`;
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Redrawn in place on a terminal, at most ten times a second; nothing when stderr is not a terminal. */
function progressBar(label: string): ((done: number, total: number) => void) & { end(): void } {
  const tty = process.stderr.isTTY;
  let last = 0;
  let shown = false;
  const draw = (done: number, total: number) => {
    if (!tty || (Date.now() - last < 100 && done < total)) return;
    last = Date.now();
    shown = true;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const width = 30;
    process.stderr.write(`\r${label} [${'#'.repeat(Math.floor(frac * width)).padEnd(width)}] ${Math.floor(frac * 100)}% ${(done / 1048576).toFixed(1)} MiB`);
  };
  return Object.assign(draw, { end: () => shown && process.stderr.write('\n') });
}

function restoreTarget(flags: Record<string, string | boolean>): RestoreTarget {
  const { txid, timestamp } = flags;
  if (txid !== undefined && timestamp !== undefined) throw new UsageError('litefs restore: give -txid or -timestamp, not both');
  if (typeof txid === 'string') {
    const n = parseTxid(txid);
    if (n === undefined) throw new UsageError(`litefs restore: -txid "${txid}" is not a TXID (16 hex digits or a decimal number, at least 1)`);
    return { txid: n };
  }
  if (typeof timestamp === 'string') {
    const t = parseRfc3339(timestamp);
    if (t === undefined) throw new UsageError(`litefs restore: -timestamp "${timestamp}" is not an RFC 3339 time like 2024-05-01T12:00:00Z`);
    return { timestamp: t };
  }
  return { latest: true };
}

export async function runRestore(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, RESTORE_FLAGS, 'restore');
  if (args.length !== 1) throw new UsageError('litefs restore: give exactly one database name (litefs restore -config PATH -o FILE DB)');
  const db = args[0]!;
  if (typeof flags.config !== 'string') throw new UsageError('litefs restore: -config PATH is required (its backup: section names the bucket)');
  if (typeof flags.o !== 'string' || !flags.o) throw new UsageError('litefs restore: -o FILE is required (where to write the database)');
  const output = flags.o;
  const target = restoreTarget(flags);
  const parallelism = flags.parallelism === undefined ? 8 : Number(flags.parallelism);
  if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > 256) {
    throw new UsageError(`litefs restore: -parallelism "${flags.parallelism}" is not an integer in 1..256`);
  }
  const cfg = backupConfig(flags.config);
  if (fs.existsSync(output)) {
    if (flags['if-db-not-exists'] === true) {
      process.stdout.write(`${output} already exists, skipping restore of ${db}\n`);
      return 0;
    }
    throw new RestoreError(`litefs restore: ${output} already exists; remove it first or pass -if-db-not-exists`);
  }
  const store = await openStore(cfg);
  const layout = new BackupLayout(cfg.path);
  try {
    const bar = progressBar(`restoring ${db}`);
    let result;
    try {
      result = await restoreDatabase({ store, layout, db, output, target, parallelism, onProgress: bar });
    } catch (err) {
      // Only when there is nothing at all: a backup that cannot reach the target is still an error.
      if (flags['if-replica-exists'] === true && err instanceof RestorePlanError && (await readCatalog(store, layout, db)).length === 0) {
        process.stdout.write(`no backup of ${db} at ${location(store, layout.generationsPrefix(db))}, skipping restore\n`);
        return 0;
      }
      throw err;
    } finally {
      bar.end();
    }
    const secs = result.ms / 1000;
    process.stdout.write(
      `restored ${db} to ${output}: TXID ${hex16(result.txid)} (${result.txid}), position ${formatPosition(result.txid, result.checksum)}, ` +
        `as of ${new Date(result.timestamp).toISOString()}, generation ${result.generation}, ${formatBytes(result.bytes)} ` +
        `in ${secs.toFixed(2)} s (${(result.bytes / 1e6 / Math.max(secs, 1e-3)).toFixed(1)} MB/s)\n`,
    );
    return 0;
  } finally {
    store.close();
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/** What `litefs backups -json DB` prints: every generation with its snapshots, segments and other keys. */
export async function describeBackups(store: ObjectStore, layout: BackupLayout, db: string) {
  const gens = await readCatalog(store, layout, db);
  return {
    db,
    location: location(store, layout.generationsPrefix(db)),
    generations: gens.map((g) => ({
      id: g.id,
      startedAt: iso(g.startedAt),
      snapshots: g.snapshots.map((s) => ({ key: s.key, txid: s.txid, txidHex: hex16(s.txid), size: s.size, lastModified: iso(s.lastModified) })),
      segments: g.segments.map((s) => ({
        key: s.key, minTxid: s.minTxid, maxTxid: s.maxTxid, minTxidHex: hex16(s.minTxid), maxTxidHex: hex16(s.maxTxid), size: s.size, lastModified: iso(s.lastModified),
      })),
      others: g.others,
    })),
  };
}

/** Columns padded to their widest cell. */
function table(rows: string[][]): string[] {
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), []);
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

/** The text form of describeBackups: one block per generation, one row per object. */
export function renderBackups(d: Awaited<ReturnType<typeof describeBackups>>): string {
  if (d.generations.length === 0) return `no backup of ${d.db} at ${d.location}\n`;
  const out: string[] = [];
  for (const g of d.generations) {
    out.push(`generation ${g.id} (started ${g.startedAt}): ${g.snapshots.length} snapshot(s), ${g.segments.length} segment(s)`);
    const rows = [
      ...g.snapshots.map((s) => ['snapshot', `TXID ${s.txidHex}`, `(${s.txid})`, s.lastModified, formatBytes(s.size)]),
      ...g.segments.map((s) => ['segment', `TXID ${s.minTxidHex}-${s.maxTxidHex}`, `(${s.minTxid}-${s.maxTxid})`, s.lastModified, formatBytes(s.size)]),
      ...g.others.map((key) => ['other', key]),
    ];
    out.push(...table(rows).map((r) => `  ${r}`));
  }
  return out.join('\n') + '\n';
}

export async function runBackups(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, BACKUPS_FLAGS, 'backups');
  if (args.length > 1) throw new UsageError('litefs backups: give at most one database name');
  const cfg = backupConfig(typeof flags.config === 'string' ? flags.config : undefined);
  const store = await openStore(cfg);
  const layout = new BackupLayout(cfg.path);
  const json = flags.json === true;
  try {
    if (args.length === 0) {
      const databases = await listBackedUpDatabases(store, layout);
      const where = location(store, layout.databasesPrefix);
      if (json) process.stdout.write(JSON.stringify({ location: where, databases }, null, 2) + '\n');
      else process.stdout.write(databases.length ? databases.join('\n') + '\n' : `no backed-up databases at ${where}\n`);
      return 0;
    }
    const described = await describeBackups(store, layout, args[0]!);
    process.stdout.write(json ? JSON.stringify(described, null, 2) + '\n' : renderBackups(described));
    return 0;
  } finally {
    store.close();
  }
}
