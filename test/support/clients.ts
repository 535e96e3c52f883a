// SQLite clients that no one here wrote, driven from tests: the sqlite3
// CLI, Python's sqlite3 module (one-shot or held open), better-sqlite3.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const JOURNAL_MODES = ['delete', 'truncate', 'persist', 'wal'] as const;
export type JournalMode = (typeof JOURNAL_MODES)[number];

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, feeding stdin; never throws on exit code. */
export function run(cmd: string, args: string[], input = ''): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // A child that exits before reading its input (the sqlite3 CLI failing to
    // open its database) closes the pipe: its exit code and stderr say why.
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    child.stdin.end(input);
  });
}

/**
 * The sqlite3 CLI with statements on stdin; -bail stops at the first error.
 * It waits up to 5 s for locks, as an application sharing a database must: in
 * a rollback mode any reader's SHARED lock (another client, or the primary
 * reading a snapshot image) makes a writer without one fail at once.
 */
export function sqlite3(db: string, sql: string): Promise<RunResult> {
  return run('sqlite3', ['-bail', '-cmd', '.timeout 5000', db], sql);
}

export function python(code: string, args: string[] = []): Promise<RunResult> {
  return run('python3', ['-c', code, ...args]);
}

const HELD_PY = `
import sqlite3, sys, json
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=float(sys.argv[2]))
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        rows = con.execute(line).fetchall()
        print(json.dumps({"rows": rows}), flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e), "kind": type(e).__name__}), flush=True)
`;

/** A Python process holding one connection open; each query is one line of SQL. */
export class HeldConnection {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static async open(db: string, busyTimeoutSeconds = 5): Promise<HeldConnection> {
    const child = spawn('python3', ['-c', HELD_PY, db, String(busyTimeoutSeconds)]);
    const held = new HeldConnection(child);
    await held.next();
    return held;
  }

  private async next(): Promise<{ rows?: unknown[][]; error?: string }> {
    const r = await this.lines.next();
    if (r.done) throw new Error('held connection exited');
    return JSON.parse(r.value);
  }

  /** Sends one statement; resolves with rows or an error message. */
  async query(sql: string): Promise<{ rows?: unknown[][]; error?: string }> {
    this.child.stdin.write(sql.replace(/\n/g, ' ') + '\n');
    return this.next();
  }

  /** Sends a statement without waiting for its answer (e.g. one that blocks). */
  send(sql: string): Promise<{ rows?: unknown[][]; error?: string }> {
    return this.query(sql);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    await exited;
  }
}

/** A mount dir and a data dir under a fresh temp dir, removed by cleanup(). */
export function tempDirs(prefix = 'litefs-test-'): { root: string; mnt: string; data: string; cleanup: () => void } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const mnt = path.join(root, 'mnt');
  const data = path.join(root, 'data');
  fs.mkdirSync(mnt);
  fs.mkdirSync(data);
  // Retried: a node stopped a moment ago may still be letting go of a file under its data dir (ENOTEMPTY, EBUSY).
  return { root, mnt, data, cleanup: () => fs.rmSync(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The sqlite3 CLI held open on one database; each query's output ends at a marker line. */
export class HeldCli {
  private buffer = '';
  private waiting?: (out: string) => void;
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => {
      this.buffer += d.toString();
      this.deliver();
    });
    child.stderr.on('data', (d: Buffer) => {
      this.buffer += d.toString();
      this.deliver();
    });
  }

  static open(db: string, busyTimeoutMs = 5000): HeldCli {
    const held = new HeldCli(spawn('sqlite3', ['-batch', db]));
    held.child.stdin.write(`.timeout ${busyTimeoutMs}\n`);
    return held;
  }

  private deliver(): void {
    const end = this.buffer.indexOf('__END__\n');
    if (end < 0 || !this.waiting) return;
    const out = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end + 8);
    const w = this.waiting;
    this.waiting = undefined;
    w(out);
  }

  /** Runs SQL; resolves with everything it printed (results and errors). */
  query(sql: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.child.stdin.write(`${sql.replace(/\n/g, ' ')}\n.print __END__\n`);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    await exited;
  }
}
