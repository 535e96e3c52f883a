// A server a test runs as a child process (etcd, s3rver): its output
// gathered, stopped by PID, and, should the test process exit without its
// after() hooks (a crash), killed along with removing its temporary dirs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const running = new Set<ChildProcess>();
const ownDirs = new Set<string>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
  for (const d of ownDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary directory, removed at exit unless released first. */
export function tempDirForServer(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  ownDirs.add(dir);
  return dir;
}

/** Removes a directory made by tempDirForServer. */
export function removeServerDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  ownDirs.delete(dir);
}

export class ServerProcess {
  /** Everything the server printed, across restarts. */
  output = '';
  child?: ChildProcess;
  private exited: Promise<void> = Promise.resolve();

  /** `echo` copies the output to stderr with this prefix (tracing). */
  constructor(private readonly echo?: string) {}

  /** Starts the process (a previous one must have stopped). */
  spawn(command: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const c = spawn(command, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = c;
    running.add(c);
    const onData = (d: Buffer) => {
      this.output += d.toString();
      if (this.echo) process.stderr.write(`[${this.echo}] ${d}`);
    };
    c.stdout?.on('data', onData);
    c.stderr?.on('data', onData);
    this.exited = new Promise<void>((resolve) => {
      const gone = () => {
        running.delete(c);
        resolve();
      };
      c.once('exit', gone);
      c.once('error', (err) => {
        this.output += `spawn error: ${err.message}\n`;
        gone();
      });
    });
    return c;
  }

  /** Has `c` (default: the current child) exited? */
  hasExited(c = this.child): boolean {
    return !c || !running.has(c);
  }

  /** Sends `signal` by PID if the process still runs, and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const c = this.child;
    if (!c) return;
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, signal);
      } catch {
        // already gone
      }
    }
    await this.exited;
  }
}
