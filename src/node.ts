// Wires one node from a Config: the data dir, the FUSE mount, and (as the
// project grows) the store, HTTP server, lease and backup. Returns when
// the node stops: on SIGINT/SIGTERM, or when the mount goes away.
import fs from 'node:fs';
import type { Config } from './config/index.js';
import { mount } from './fuse/index.js';
import type { Logger } from './log.js';

export interface RunningNode {
  /** Resolves with the exit code when the node has stopped. */
  done: Promise<number>;
  stop(): void;
}

export async function startNode(config: Config, log: Logger): Promise<RunningNode> {
  fs.mkdirSync(config.data.dir, { recursive: true });
  const fuse = mount(config.fuse.dir, config.data.dir, () => undefined, {
    debug: config.fuse.debug,
    allowOther: config.fuse.allowOther,
    handleSignals: false,
  });
  if (fuse.clearedDeadMount) log.warn({ dir: fuse.dir }, 'cleared a dead mount left by an earlier process');
  log.info({ dir: fuse.dir }, 'mounted');
  log.info({ dir: config.data.dir }, 'data directory');
  log.info({ role: 'primary', lease: config.lease.type }, 'role');

  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const stop = (code: number) => {
    if (fuse.isMounted) fuse.unmount();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    resolveDone(code);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, 'stopping');
    stop(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  fuse.on('unmounted', () => {
    log.error({ dir: fuse.dir }, 'the mount went away; stopping');
    stop(1);
  });
  return { done, stop: () => stop(0) };
}
