// Runs the Consul stand-in as its own process (so a test can kill -9 it and
// start it again on the same port and state file) and waits for its ready line.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface SpawnOptions {
  port?: number;
  token?: string;
  stateFile?: string;
  ttlMultiplier?: number;
  ttlScale?: number;
  /** How long to wait for the ready line (ms). */
  readyTimeout?: number;
}

export interface SpawnedStandIn {
  url: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** Signals the process by its PID (default SIGTERM) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

export async function spawnConsulStandIn(opts: SpawnOptions = {}): Promise<SpawnedStandIn> {
  const args = [MAIN, '--port', String(opts.port ?? 0)];
  if (opts.token !== undefined) args.push('--token', opts.token);
  if (opts.stateFile !== undefined) args.push('--state', opts.stateFile);
  if (opts.ttlMultiplier !== undefined) args.push('--ttl-multiplier', String(opts.ttlMultiplier));
  if (opts.ttlScale !== undefined) args.push('--ttl-scale', String(opts.ttlScale));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error('consul stand-in: spawn failed');
  let exitedFlag = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (!exitedFlag) process.kill(pid, signal);
    await exited;
  };
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`consul stand-in: no ready line within ${opts.readyTimeout ?? 10_000} ms; stderr: ${stderr}`)), opts.readyTimeout ?? 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /consul stand-in listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`consul stand-in exited (${code}) before it was ready; stderr: ${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await stop('SIGKILL');
    throw err;
  });
  child.stdout!.resume();
  return { url, port: Number(new URL(url).port), pid, child, exited, stop };
}
