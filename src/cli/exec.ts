// The `exec` section of the config: commands litefs runs once the mount is up.
//
// All entries but the last run to completion, in order (e.g. migrations); each
// must exit 0. The last is the application: litefs starts it, supervises it and
// exits with its code. An entry with `if-candidate` runs only on a node that is
// a lease candidate; elsewhere it is skipped (and logged), the last one too, in
// which case there is no application to supervise (as in LiteFS).
//
// Each command line runs with `/bin/sh -c CMD`, stdio inherited, environment
// process.env plus opts.env. Shells (dash, bash) exec a single simple command
// in place, so the application is the child itself; for a compound line
// (`a && b`), write `exec app` last so that forwarded signals reach the app
// rather than the shell.
//
// Signals: this module installs no handlers. The caller forwards SIGINT and
// SIGTERM received by litefs to the application with `SupervisedApp.signal()`
// and then waits for `exited`.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

export interface ExecEntry {
  cmd: string;
  ifCandidate: boolean;
}

export interface ExecOptions {
  /** Whether this node is a lease candidate; entries with ifCandidate are skipped otherwise. */
  isCandidate: boolean;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
  /** Added to (and overriding) process.env for every command. */
  env?: NodeJS.ProcessEnv;
  /** The shell used as `SHELL -c CMD`; '/bin/sh' unless set (tests use it). */
  shell?: string;
}

export interface SupervisedApp {
  pid: number;
  /** Resolves with the exit code to use for litefs: the app's code, or 128+signal number if killed by a signal. */
  exited: Promise<number>;
  /**
   * Forwards a signal to the app (a no-op once it has exited). litefs's own
   * SIGINT/SIGTERM handlers call this; runExec does not install any.
   */
  signal(sig: NodeJS.Signals): void;
}

const DEFAULT_SHELL = '/bin/sh';

/** The exit code a shell would report: the code, or 128 + the signal number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal !== null) {
    const n = (constants.signals as Record<string, number | undefined>)[signal];
    return 128 + (n ?? 0);
  }
  return 1;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? 'unknown'}`;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}

/** Starts `shell -c cmd`; resolves once it is running, rejects (one line) if it cannot start. */
function start(cmd: string, opts: ExecOptions): Promise<ChildProcess> {
  const shell = opts.shell ?? DEFAULT_SHELL;
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(shell, ['-c', cmd], { stdio: 'inherit', env: { ...process.env, ...opts.env } });
    } catch (err) {
      reject(new Error(oneLine(`exec: cannot start ${JSON.stringify(cmd)} with ${shell}: ${(err as Error).message}`)));
      return;
    }
    const onError = (err: Error): void => {
      child.off('spawn', onSpawn);
      reject(new Error(oneLine(`exec: cannot start ${JSON.stringify(cmd)} with ${shell}: ${err.message}`)));
    };
    const onSpawn = (): void => {
      child.off('error', onError);
      resolve(child);
    };
    child.once('error', onError);
    child.once('spawn', onSpawn);
  });
}

/** Resolves with the child's exit code and signal. */
function waitExit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode as NodeJS.Signals | null });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/**
 * Runs all entries but the last to completion, in order; each must exit 0 or
 * the whole thing rejects with an Error naming the command and its exit code
 * or signal. Entries with ifCandidate are skipped (logged) when !isCandidate.
 * Then starts the last entry as the supervised application and returns a
 * handle; undefined with no entries, or when the last entry is skipped.
 */
export async function runExec(entries: ExecEntry[], opts: ExecOptions): Promise<SupervisedApp | undefined> {
  if (entries.length === 0) return undefined;
  const { log } = opts;
  const skip = (e: ExecEntry): boolean => {
    if (e.ifCandidate && !opts.isCandidate) {
      log.info({ cmd: e.cmd }, 'node is not a candidate, skipping exec command');
      return true;
    }
    return false;
  };

  for (const entry of entries.slice(0, -1)) {
    if (skip(entry)) continue;
    log.info({ cmd: entry.cmd }, 'running exec command');
    const child = await start(entry.cmd, opts);
    const { code, signal } = await waitExit(child);
    if (code !== 0) {
      const msg = `exec: command ${JSON.stringify(entry.cmd)} ${describeExit(code, signal)}`;
      log.error({ cmd: entry.cmd, code, signal }, msg);
      throw new Error(msg);
    }
    log.info({ cmd: entry.cmd }, 'exec command finished');
  }

  const last = entries[entries.length - 1]!;
  if (skip(last)) return undefined;
  log.info({ cmd: last.cmd }, 'starting application');
  const child = await start(last.cmd, opts);
  // After a successful spawn, 'error' means a failed kill(); never let it throw.
  child.on('error', (err) => log.warn({ cmd: last.cmd, err: err.message }, 'application process error'));
  const exited = waitExit(child).then(({ code, signal }) => {
    const status = exitStatus(code, signal);
    const fields = { cmd: last.cmd, pid: child.pid, code, signal, status };
    if (status === 0) log.info(fields, 'application exited');
    else log.warn(fields, `application ${describeExit(code, signal)}`);
    return status;
  });
  return {
    pid: child.pid!,
    exited,
    signal(sig: NodeJS.Signals): void {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        child.kill(sig);
      } catch (err) {
        log.warn({ pid: child.pid, signal: sig, err: (err as Error).message }, 'cannot signal application');
      }
    },
  };
}
