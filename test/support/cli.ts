// Runs the built `litefs` command as a user would, in its own process.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, sleep, type RunResult } from './clients.js';
import { mountPoints } from '../../src/fuse/mountpoint.js';

export const LITEFS_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

export function litefs(args: string[], input = ''): Promise<RunResult> {
  return run(process.execPath, [LITEFS_BIN, ...args], input);
}

/** Writes a litefs.yml for a single static-primary node. */
export function writeConfig(dir: string, opts: { mnt: string; data: string; extra?: string; dataExtra?: string; fuseExtra?: string; port?: number }): string {
  const file = path.join(dir, `litefs-${path.basename(opts.mnt)}.yml`);
  fs.writeFileSync(
    file,
    `fuse:\n  dir: "${opts.mnt}"\n${opts.fuseExtra ?? ''}data:\n  dir: "${opts.data}"\n${opts.dataExtra ?? ''}http:\n  addr: "127.0.0.1:${opts.port ?? 0}"\nlease:\n  type: static\n  advertise-url: "http://127.0.0.1:${opts.port ?? 20202}"\n${opts.extra ?? ''}`,
  );
  return file;
}

/** A `litefs mount` process running in the background. */
export class MountProcess {
  output = '';
  readonly exited: Promise<number | null>;
  private constructor(readonly child: ChildProcess, readonly mnt: string) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  /** Starts `litefs mount -config FILE` and waits until `mnt` is mounted. */
  static async start(config: string, mnt: string, env: NodeJS.ProcessEnv = {}): Promise<MountProcess> {
    const child = spawn(process.execPath, [LITEFS_BIN, 'mount', '-config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const p = new MountProcess(child, mnt);
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`litefs mount exited (${child.exitCode}): ${p.output}`);
      if (mountPoints().get(mnt) === 'fuse.litefs' && /http server listening/.test(p.output)) return p;
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new Error(`litefs mount did not mount ${mnt}: ${p.output}`);
  }

  /** Stops the process (by its PID); after a clean stop nothing may be left mounted. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const code = await this.exited;
    if (signal !== 'SIGKILL' && mountPoints().has(this.mnt)) {
      throw new Error(`litefs exited (${code}) but ${this.mnt} is still mounted: ${this.output}`);
    }
    return code;
  }
}
