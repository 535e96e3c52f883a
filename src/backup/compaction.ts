// Compaction: many small segment objects become few large ones, so a
// restore makes few requests (one GET per second of commits adds up to
// 86,400 objects a day). Windows of TXIDs aligned to 256, 4096, 65536 and
// 1048576 are merged once complete: the objects lying wholly inside a
// window become one object holding the same transaction files, byte for
// byte, then the small ones are deleted. A restore's chain takes the object
// reaching furthest (catalog.ts), so the bucket is consistent at every step,
// and an object straddling a window's edge is simply left as it is.
import { walSegmentRecord } from '../replication/records.js';
import type { SegmentInfo } from './catalog.js';
import type { BackupLayout } from './layout.js';
import { decodeSegmentObject } from './objects.js';
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

/** Merges the objects wholly inside [start, end] when there are several and they chain; undefined if nothing to do. */
async function mergeWindow(ctx: CompactionContext, segments: SegmentInfo[], start: number, end: number): Promise<SegmentInfo[] | undefined> {
  const inside = segments.filter((s) => s.minTxid >= start && s.maxTxid <= end);
  if (inside.length < 2) return undefined;
  const chain: SegmentInfo[] = [];
  for (const s of inside) {
    const last = chain[chain.length - 1];
    if (!last) chain.push(s);
    else if (s.minTxid === last.maxTxid + 1) chain.push(s);
    else if (s.minTxid > last.maxTxid + 1) return undefined; // a hole: leave the window alone
  }
  if (chain.length < 2 || chain.reduce((n, s) => n + s.size, 0) > MAX_MERGED_BYTES) return undefined;

  const bodies: Buffer[] = new Array(chain.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(PARALLEL_GETS, chain.length) }, async () => {
    while (next < chain.length) {
      const i = next++;
      ctx.signal?.throwIfAborted();
      bodies[i] = await ctx.objects.get(chain[i]!.key);
    }
  }));
  const files = chain.flatMap((s, i) => {
    const label = `${ctx.objects.label}/${s.key}`;
    return decodeSegmentObject(label, ctx.db, parseObjectName(s.key)!, bodies[i]!).map(({ tx, bytes }) => ({
      bytes, minTxid: tx.minTxid, maxTxid: tx.maxTxid, preApplyChecksum: tx.preApplyChecksum, postApplyChecksum: tx.postApplyChecksum, pageSize: tx.pageSize, commitSize: tx.commitSize,
    }));
  });
  const body = walSegmentRecord(ctx.db, files); // checks the chain across objects
  const first = chain[0]!;
  const last = chain[chain.length - 1]!;
  const key = ctx.layout.segmentKey(ctx.db, ctx.generation, first.minTxid, last.maxTxid);
  await ctx.objects.put(key, body, ctx.signal);
  const replaced = new Set(inside.map((s) => s.key));
  replaced.delete(key);
  await ctx.objects.delete([...replaced]);
  const kept = segments.filter((s) => !replaced.has(s.key) && s.key !== key);
  kept.push({ key, minTxid: first.minTxid, maxTxid: last.maxTxid, size: body.length, lastModified: Date.now() });
  return kept.sort((a, b) => a.minTxid - b.minTxid || a.maxTxid - b.maxTxid);
}
