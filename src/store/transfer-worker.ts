// Worker thread for export and import. They use SQLite itself (better-sqlite3)
// on the mounted path, so SQLite's own locks make them consistent, and a
// commit they cause is captured like any application's. A worker, because
// the main thread must stay free to answer the mount's commit events.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

type Job = { op: 'export'; path: string } | { op: 'check'; path: string } | { op: 'restore'; from: string; to: string };

function run(job: Job): unknown {
  switch (job.op) {
    case 'export': {
      const db = new Database(job.path, { readonly: true, fileMustExist: true });
      try {
        return db.serialize();
      } finally {
        db.close();
      }
    }
    case 'check': {
      const db = new Database(job.path, { readonly: true, fileMustExist: true });
      try {
        const rows = db.pragma('integrity_check') as { integrity_check: string }[];
        return rows.map((r) => r.integrity_check).join('; ');
      } finally {
        db.close();
      }
    }
    case 'restore':
      return undefined; // asynchronous: see below
  }
}

async function restore(from: string, to: string): Promise<void> {
  const src = new Database(from, { readonly: true, fileMustExist: true });
  try {
    // Everything in one step: one write transaction on the destination.
    await src.backup(to, { progress: () => 0x7fffffff });
  } finally {
    src.close();
  }
}

const job = workerData as Job;
try {
  const result = job.op === 'restore' ? await restore(job.from, job.to) : run(job);
  // A serialized database moves to the main thread without a copy.
  const transfer = result instanceof Uint8Array ? [result.buffer as ArrayBuffer] : [];
  parentPort!.postMessage({ ok: true, result }, transfer);
} catch (err) {
  parentPort!.postMessage({ ok: false, error: (err as Error).message });
}
