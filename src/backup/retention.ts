// Backup retention: what no retained snapshot needs goes. A snapshot is
// retained when it is newer than the retention window, and so is the newest
// one before the window (restores to the window's start need it). Segments
// at or before the oldest retained snapshot, older snapshots, and whole
// generations (other than the current one) written to only before the
// window are deleted.
import { readCatalog } from './catalog.js';
import type { BackupLayout } from './layout.js';
import type { ObjectStore } from './object-store.js';

/** Deletes what `retentionMs` no longer keeps; returns how many objects went. */
export async function enforceBackupRetention(objects: ObjectStore, layout: BackupLayout, db: string, currentGeneration: string, retentionMs: number, now = Date.now()): Promise<number> {
  const cutoff = now - retentionMs;
  const doomed: string[] = [];
  for (const gen of await readCatalog(objects, layout, db)) {
    const all = [...gen.snapshots, ...gen.segments];
    const lastWrite = Math.max(0, ...all.map((o) => o.lastModified));
    if (gen.id !== currentGeneration && lastWrite < cutoff) {
      doomed.push(...all.map((o) => o.key), ...gen.others);
      continue;
    }
    const before = gen.snapshots.filter((s) => s.lastModified < cutoff);
    const oldestKept = before.length > 0 ? before[before.length - 1] : gen.snapshots[0];
    if (!oldestKept) continue;
    doomed.push(...gen.snapshots.filter((s) => s.txid < oldestKept.txid).map((s) => s.key));
    doomed.push(...gen.segments.filter((s) => s.maxTxid <= oldestKept.txid).map((s) => s.key));
  }
  if (doomed.length > 0) await objects.delete(doomed);
  return doomed.length;
}
