// Writes and probes for the failover tests.
import assert from 'node:assert/strict';
import path from 'node:path';
import { sleep, sqlite3 } from './clients.js';
import type { ClusterNode } from './cluster.js';

/** One row through the sqlite3 CLI; must succeed. */
export async function insert(node: ClusterNode, db: string, v: string): Promise<void> {
  const r = await sqlite3(path.join(node.mnt, db), `INSERT INTO t(v) VALUES ('${v}');`);
  assert.equal(r.code, 0, `insert on ${node.name}: ${r.stderr}`);
}

/** A write on a replica fails at once with SQLite's read-only error. */
export async function expectReadOnly(node: ClusterNode, db: string): Promise<void> {
  const started = Date.now();
  const r = await sqlite3(path.join(node.mnt, db), `INSERT INTO t(v) VALUES ('must-fail');`);
  assert.notEqual(r.code, 0, `a write on ${node.name} must fail`);
  assert.match(r.stderr, /readonly|read-only/i, `${node.name}: ${r.stderr}`);
  assert.ok(Date.now() - started < 2000, 'the write fails at once');
}

/**
 * Tries a write on each node in turn until one accepts it; returns that node
 * and the ms from `since` to the moment the write returned.
 */
export async function acceptsWriteWithin(nodes: ClusterNode[], db: string, since: number, timeoutMs: number): Promise<{ node: ClusterNode; ms: number }> {
  const deadline = since + timeoutMs;
  for (;;) {
    for (const n of nodes) {
      const r = await sqlite3(path.join(n.mnt, db), `INSERT INTO t(v) VALUES ('probe-${n.name}');`);
      if (r.code === 0) return { node: n, ms: Date.now() - since };
    }
    if (Date.now() > deadline) throw new Error(`no node of ${nodes.map((n) => n.name).join(', ')} accepted a write within ${timeoutMs} ms`);
    await sleep(25);
  }
}
