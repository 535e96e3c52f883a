// What a database's backup holds, read from a listing, and which objects a
// restore needs: the newest snapshot at or before the target, then a chain
// of segments from just after it. Segments may overlap (a compacted object
// and the small ones it replaces, while both exist); a chain takes at each
// step the object that reaches furthest.
import { generationTime, isGenerationId, parseObjectName, type BackupLayout } from './layout.js';
import type { ObjectStore } from './object-store.js';

export interface SnapshotInfo {
  key: string;
  txid: number;
  size: number;
  lastModified: number;
}

export interface SegmentInfo {
  key: string;
  minTxid: number;
  maxTxid: number;
  size: number;
  lastModified: number;
}

export interface Generation {
  id: string;
  /** From the id: when the generation was started. */
  startedAt: number;
  /** Ascending by TXID. */
  snapshots: SnapshotInfo[];
  /** Ascending by min TXID, then max TXID. */
  segments: SegmentInfo[];
  /** Keys under the generation that are neither (left alone, listed by `litefs backups`). */
  others: string[];
}

/** Restore to the newest transaction, to a TXID, or to the last transaction committed at or before a moment. */
export type RestoreTarget = { latest: true } | { txid: number } | { timestamp: number };

/** A restore stops with this; the message is one line naming the database and the object or TXID. */
export class RestorePlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RestorePlanError';
  }
}

/** The databases that have a backup under the layout's root. */
export async function listBackedUpDatabases(store: ObjectStore, layout: BackupLayout): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of await store.listPrefixes(layout.databasesPrefix)) {
    const db = prefix.slice(layout.databasesPrefix.length, -1);
    if ((await store.listPrefixes(layout.generationsPrefix(db))).length > 0) out.push(db);
  }
  return out;
}

/** Every generation of one database, oldest first. */
export async function readCatalog(store: ObjectStore, layout: BackupLayout, db: string): Promise<Generation[]> {
  const gens = new Map<string, Generation>();
  const base = layout.generationsPrefix(db);
  for (const o of await store.list(base)) {
    const rest = o.key.slice(base.length);
    const id = rest.slice(0, rest.indexOf('/'));
    if (!isGenerationId(id)) continue;
    let gen = gens.get(id);
    if (!gen) gens.set(id, (gen = { id, startedAt: generationTime(id), snapshots: [], segments: [], others: [] }));
    const name = parseObjectName(o.key);
    const dir = rest.slice(id.length + 1, rest.lastIndexOf('/'));
    if (name?.kind === 'snapshot' && dir === 'snapshots') gen.snapshots.push({ key: o.key, txid: name.maxTxid, size: o.size, lastModified: o.lastModified });
    else if (name?.kind === 'segment' && dir === 'segments') gen.segments.push({ key: o.key, minTxid: name.minTxid, maxTxid: name.maxTxid, size: o.size, lastModified: o.lastModified });
    else gen.others.push(o.key);
  }
  const list = [...gens.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  for (const g of list) {
    g.snapshots.sort((a, b) => a.txid - b.txid);
    g.segments.sort((a, b) => a.minTxid - b.minTxid || a.maxTxid - b.maxTxid);
  }
  return list;
}

/**
 * The segments after `fromTxid` (exclusive), each step taking the object
 * that covers the next TXID and reaches furthest. Stops at the end of the
 * generation or at `upTo`; `gapAt` is the first TXID nothing covers while
 * later segments exist.
 */
export function segmentChain(gen: Generation, fromTxid: number, upTo = Infinity): { segments: SegmentInfo[]; endTxid: number; gapAt?: number } {
  const chain: SegmentInfo[] = [];
  const segs = gen.segments;
  let next = fromTxid + 1;
  let reach: SegmentInfo | undefined; // of the objects starting at or before `next`, the one ending last
  for (let i = 0; next <= upTo; ) {
    for (; i < segs.length && segs[i]!.minTxid <= next; i++) if (!reach || segs[i]!.maxTxid > reach.maxTxid) reach = segs[i];
    if (!reach || reach.maxTxid < next) break;
    chain.push(reach);
    next = reach.maxTxid + 1;
  }
  const endTxid = next - 1;
  const later = segs.some((s) => s.minTxid > next);
  return later && endTxid < upTo ? { segments: chain, endTxid, gapAt: next } : { segments: chain, endTxid };
}

export interface RestorePlan {
  db: string;
  generation: Generation;
  snapshot: SnapshotInfo;
  /** In apply order; the first may start at or before the snapshot's TXID (earlier transactions are skipped). */
  segments: SegmentInfo[];
  /** The TXID the restore ends at when the target is a TXID or the latest; for a timestamp, the last TXID it may reach. */
  endTxid: number;
  target: RestoreTarget;
}

const hex = (n: number) => n.toString(16).padStart(16, '0');

/** Picks the generation, the snapshot and the segments for a target, or says in one line why it cannot. */
export function planRestore(db: string, gens: Generation[], target: RestoreTarget): RestorePlan {
  const usable = gens.filter((g) => g.snapshots.length > 0);
  if (gens.length === 0) throw new RestorePlanError(`backup of ${db}: no generations found`);
  if (usable.length === 0) throw new RestorePlanError(`backup of ${db}: no snapshot in any of ${gens.length} generation(s)`);
  const tried: string[] = [];
  for (const gen of [...usable].reverse()) {
    if ('txid' in target) {
      const snap = [...gen.snapshots].reverse().find((s) => s.txid <= target.txid);
      if (!snap) {
        tried.push(`${gen.id}: first snapshot at TXID ${gen.snapshots[0]!.txid}`);
        continue;
      }
      const chain = segmentChain(gen, snap.txid, target.txid);
      if (chain.endTxid < target.txid) {
        if (chain.gapAt !== undefined) throw gapError(db, gen, chain.gapAt);
        tried.push(`${gen.id}: ends at TXID ${chain.endTxid}`);
        continue;
      }
      return { db, generation: gen, snapshot: snap, segments: chain.segments, endTxid: target.txid, target };
    }
    if ('timestamp' in target) {
      // Upload time bounds commit time from above: a snapshot uploaded by then is at a TXID committed by then.
      // Listings give whole seconds (S3, s3rver): a second's margin keeps that true.
      const snap = [...gen.snapshots].reverse().find((s) => s.lastModified + 1000 <= target.timestamp);
      if (!snap) {
        tried.push(`${gen.id}: first snapshot uploaded ${new Date(gen.snapshots[0]!.lastModified).toISOString()}`);
        continue;
      }
      const chain = segmentChain(gen, snap.txid);
      if (chain.gapAt !== undefined) throw gapError(db, gen, chain.gapAt);
      return { db, generation: gen, snapshot: snap, segments: chain.segments, endTxid: chain.endTxid, target };
    }
    const snap = gen.snapshots[gen.snapshots.length - 1]!;
    const chain = segmentChain(gen, snap.txid);
    if (chain.gapAt !== undefined) throw gapError(db, gen, chain.gapAt);
    return { db, generation: gen, snapshot: snap, segments: chain.segments, endTxid: Math.max(snap.txid, chain.endTxid), target };
  }
  const what = 'txid' in target ? `TXID ${target.txid}` : `${new Date((target as { timestamp: number }).timestamp).toISOString()}`;
  throw new RestorePlanError(`backup of ${db}: no generation reaches ${what} (${tried.join('; ')})`);
}

function gapError(db: string, gen: Generation, gapAt: number): RestorePlanError {
  const after = gen.segments.filter((s) => s.minTxid > gapAt).sort((a, b) => a.minTxid - b.minTxid)[0];
  const missing = after ? `${hex(gapAt)}..${hex(after.minTxid - 1)}` : hex(gapAt);
  return new RestorePlanError(`backup of ${db}: generation ${gen.id} has a gap: no segment holds TXIDs ${missing} (next is ${after?.key ?? 'none'})`);
}
