// Compaction: many small segment objects become few large ones, so a
// restore makes few requests (one GET per second of commits adds up to
// 86,400 objects a day). Windows of TXIDs aligned to 256, 4096, 65536 and
// 1048576 are merged once complete: the objects lying wholly inside a
// window become one object holding the same transaction files, byte for
// byte, then the small ones are deleted. A restore's chain takes the object
// reaching furthest (catalog.ts), so the bucket is consistent at every step,
// and an object straddling a window's edge is simply left as it is.
import { walSegmentRecord } from '../replication/records.js';
import { TxFileError, verifyChain, type SegmentFile } from '../txlog/txfile.js';
import type { SegmentInfo } from './catalog.js';
import type { BackupLayout } from './layout.js';
import { BackupObjectError, segmentObjectFiles } from './objects.js';
import type { ObjectStore } from './object-store.js';
import { parseObjectName } from './layout.js';

export const COMPACTION_WINDOWS = [256, 4096, 65536, 1048576];
/** A merged object stays well under a record's 65 MiB payload limit. */
const MAX_MERGED_BYTES = 48 * 1024 * 1024;
const PARALLEL_GETS = 8;

export interface CompactionContext {
  objects: ObjectStore;
  layout: BackupLayout;
  db: string;
  generation: string;
  signal?: AbortSignal;
}

/**
 * Merges the windows that end in (fromTxid, toTxid]. `segments` is the
 * generation's segment list (ascending); the updated list is returned.
 */
export async function compactWindows(ctx: CompactionContext, segments: SegmentInfo[], fromTxid: number, toTxid: number): Promise<{ segments: SegmentInfo[]; merged: number }> {
  let merged = 0;
  for (const size of COMPACTION_WINDOWS) {
    for (let end = Math.ceil((fromTxid + 1) / size) * size; end <= toTxid; end += size) {
      const result = await mergeWindow(ctx, segments, end - size + 1, end);
      if (result) {
        segments = result;
        merged++;
      }
    }
  }
  return { segments, merged };
}

/**
 * Merges the objects wholly inside [start, end] into one when they chain;
 * undefined if nothing to do. When one of them already holds all the others
 * (a pass stopped before its deletes finished), it is verified and the
 * others go.
 */
async function mergeWindow(ctx: CompactionContext, segments: SegmentInfo[], start: number, end: number): Promise<SegmentInfo[] | undefined> {
  const inside = segments.filter((s) => s.minTxid >= start && s.maxTxid <= end);
  if (inside.length < 2) return undefined;
  const chain = windowChain(inside);
  if (!chain || chain.reduce((n, s) => n + s.size, 0) > MAX_MERGED_BYTES) return undefined;

  const files = await readChain(ctx, chain);
  if (!files) return undefined;
  const first = chain[0]!;
  const last = chain[chain.length - 1]!;
  let merged = first;
  if (chain.length > 1) {
    const body = walSegmentRecord(ctx.db, files);
    merged = { key: ctx.layout.segmentKey(ctx.db, ctx.generation, first.minTxid, last.maxTxid), minTxid: first.minTxid, maxTxid: last.maxTxid, size: body.length, lastModified: Date.now() };
    await ctx.objects.put(merged.key, body, ctx.signal);
  }
  // Only now, with every TXID of the window verified in one object, do the others go.
  const replaced = new Set(inside.map((s) => s.key));
  replaced.delete(merged.key);
  await ctx.objects.delete([...replaced]);
  const kept = segments.filter((s) => !replaced.has(s.key) && s.key !== merged.key);
  kept.push(merged);
  return kept.sort((a, b) => a.minTxid - b.minTxid || a.maxTxid - b.maxTxid);
}

/**
 * The objects to merge, from the first one inside the window: each next one
 * starts right after the last and is, of those, the one reaching furthest
 * (an object overlapping smaller ones may hold TXIDs no other does).
 * Undefined when some object inside reaches past the chain's end: a hole, or
 * an overlap that does not line up. The window is then left alone, so
 * nothing is deleted that the merged object does not hold.
 */
function windowChain(inside: SegmentInfo[]): SegmentInfo[] | undefined {
  const furthest = new Map<number, SegmentInfo>(); // by min TXID
  for (const s of inside) if ((furthest.get(s.minTxid)?.maxTxid ?? 0) < s.maxTxid) furthest.set(s.minTxid, s);
  const chain: SegmentInfo[] = [];
  const from = inside.reduce((min, s) => Math.min(min, s.minTxid), Infinity); // not trusting the list's order: what lies before would go
  for (let s = furthest.get(from); s; s = furthest.get(s.maxTxid + 1)) chain.push(s);
  const endTxid = chain[chain.length - 1]!.maxTxid;
  return inside.every((s) => s.maxTxid <= endTxid) ? chain : undefined;
}

/**
 * Downloads (a few at a time) and verifies the chain's objects; their
 * transaction files, in order. Undefined when the page size changes along
 * the chain (a VACUUM to another page size): one object holds one page
 * size, so such a window stays as it is.
 */
async function readChain(ctx: CompactionContext, chain: SegmentInfo[]): Promise<SegmentFile[] | undefined> {
  const bodies: Buffer[] = new Array(chain.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(PARALLEL_GETS, chain.length) }, async () => {
    while (next < chain.length) {
      const i = next++;
      ctx.signal?.throwIfAborted();
      bodies[i] = await ctx.objects.get(chain[i]!.key);
    }
  }));
  const files: SegmentFile[] = [];
  for (const [i, s] of chain.entries()) {
    const label = `${ctx.objects.label}/${s.key}`;
    const own = segmentObjectFiles(label, ctx.db, parseObjectName(s.key)!, bodies[i]!);
    const prev = files[files.length - 1];
    if (prev && prev.pageSize !== own[0]!.pageSize) return undefined;
    if (prev) checkFollows(label, prev, own[0]!);
    files.push(...own);
  }
  return files;
}

/**
 * An object's first transaction must follow the last one of the object
 * before it (each object chains within itself when decoded). Checked here,
 * not left to walSegmentRecord, so the error names the object to look at.
 */
function checkFollows(label: string, prev: SegmentFile, next: SegmentFile): void {
  try {
    verifyChain(prev, next);
  } catch (err) {
    if (err instanceof TxFileError) throw new BackupObjectError(`${label}: ${err.message}`);
    throw err;
  }
}
