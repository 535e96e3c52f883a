// Helpers for the S3 backup tests: config lines, waiting for the uploader,
// and the restore command as a user runs it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, sqlite3, type RunResult } from './clients.js';
import { litefs } from './cli.js';
import { checkpoint, readPos, type Cluster, type ClusterNode } from './cluster.js';

/** The `backup:` section for a bucket at `endpoint` (s3rver or the fault proxy in front of it). */
export function backupYaml(endpoint: string, bucket: string, prefix: string, extra = ''): string {
  const sync = extra.includes('sync-interval:') ? '' : '  sync-interval: 100ms\n';
  return `backup:\n  type: s3\n  endpoint: "${endpoint}"\n  bucket: ${bucket}\n  path: ${prefix}\n  region: us-east-1\n` +
    `  access-key-id: S3RVER\n  secret-access-key: S3RVER\n${sync}${extra}`;
}

interface BackupInfo { txid: number; pending: number; uploads: number; generation?: string; error?: string }

export async function backupInfo(node: ClusterNode, db: string): Promise<BackupInfo | undefined> {
  try {
    const res = await fetch(`${node.url}/info`, { signal: AbortSignal.timeout(2000) });
    const info = (await res.json()) as { backup?: Record<string, BackupInfo> };
    return info.backup?.[db];
  } catch {
    return undefined;
  }
}

/** Waits until the node's backup holds its database's current TXID. */
export async function waitBackedUp(node: ClusterNode, db: string, timeoutMs = 30_000): Promise<BackupInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const txid = Number.parseInt(readPos(node, db).split('/')[0] ?? '0', 16);
    const b = await backupInfo(node, db);
    if (b && txid > 0 && b.txid === txid && b.pending === 0) return b;
    if (Date.now() > deadline) throw new Error(`backup of ${db} on ${node.name} did not reach TXID ${txid}: ${JSON.stringify(b)}`);
    await sleep(50);
  }
}

/** A point in the primary's history: its TXID, when, and the database's bytes then. */
export interface Point {
  txid: number;
  time: number;
  sha256: string;
}

/** Checkpoints (WAL mode) and records where the database is. */
export async function recordPoint(node: ClusterNode, db: string): Promise<Point> {
  await checkpoint(node, db);
  const txid = Number.parseInt(readPos(node, db).split('/')[0]!, 16);
  const sha256 = crypto.createHash('sha256').update(fs.readFileSync(path.join(node.mnt, db))).digest('hex');
  return { txid, time: Date.now(), sha256 };
}

export function fileSha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** `litefs restore -config <node's config> -o OUT DB ...flags`. */
export function restore(node: ClusterNode, db: string, out: string, ...flags: string[]): Promise<RunResult> {
  return litefs(['restore', '-config', node.config, '-o', out, ...flags, db]);
}

/** n single-row commits through the sqlite3 CLI. */
export async function commitRows(node: ClusterNode, db: string, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await sqlite3(path.join(node.mnt, db), `INSERT INTO t(v) VALUES ('${tag}-${i}-${'x'.repeat(200)}');`);
    if (r.code !== 0) throw new Error(`insert on ${node.name}: ${r.stderr}`);
  }
}

export type { Cluster };
