// Shared measuring helpers for the benchmarks: fixed-duration loops with
// better-sqlite3, reported as operations per second.
import Database from 'better-sqlite3';

export interface Rate {
  ops: number;
  seconds: number;
  perSecond: number;
}

/** The middle value (the upper one of an even count). */
export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Runs fn repeatedly for about `seconds`, checking the clock every batch. */
export function timed(seconds: number, batch: number, fn: () => void): Rate {
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let ops = 0;
  let elapsed = 0n;
  do {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < limit);
  const secs = Number(elapsed) / 1e9;
  return { ops, seconds: secs, perSecond: ops / secs };
}

/** Single-row insert transactions (autocommit) for `seconds`. */
export function commitRate(file: string, journalMode: string, synchronous: string, seconds: number): Rate {
  const db = new Database(file);
  try {
    db.pragma(`journal_mode=${journalMode}`);
    db.pragma(`synchronous=${synchronous}`);
    db.exec('CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, v BLOB)');
    const insert = db.prepare('INSERT INTO bench(v) VALUES (?)');
    const value = Buffer.alloc(100, 7);
    return timed(seconds, 20, () => insert.run(value));
  } finally {
    db.close();
  }
}

/** Point reads by random primary key on a table of `rows` rows. */
export function pointReadRate(file: string, rows: number, seconds: number): Rate {
  const db = new Database(file);
  try {
    db.pragma('journal_mode=wal');
    db.exec('CREATE TABLE IF NOT EXISTS reads(id INTEGER PRIMARY KEY, v BLOB)');
    const have = (db.prepare('SELECT count(*) AS n FROM reads').get() as { n: number }).n;
    if (have < rows) {
      const insert = db.prepare('INSERT INTO reads(id, v) VALUES (?, ?)');
      db.transaction(() => {
        for (let i = have + 1; i <= rows; i++) insert.run(i, Buffer.alloc(100, i % 256));
      })();
    }
    const get = db.prepare('SELECT v FROM reads WHERE id = ?');
    return timed(seconds, 200, () => get.get(1 + Math.floor(Math.random() * rows)));
  } finally {
    db.close();
  }
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
