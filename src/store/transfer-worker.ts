// Child process for export, import and snapshots. They use SQLite itself
// (better-sqlite3) on the mounted path, so SQLite's own locks make them
// consistent, and a commit they cause is captured like any application's.
// Another process, because the mount's own process must neither wait on it
// nor map its files (see transfer.ts).
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

process.once('message', async (job: Job) => {
  try {
    const result = job.op === 'restore' ? await restore(job.from, job.to) : run(job);
    process.send!({ ok: true, result }, () => process.exit(0));
  } catch (err) {
    process.send!({ ok: false, error: (err as Error).message }, () => process.exit(0));
  }
});
