// Wires one node from a Config: the store (recovered before anything is
// served), the FUSE mount, the HTTP server and the exec'd application.
// Resolves `done` with the exit code when the node stops: on SIGINT/SIGTERM,
// when the application exits, or when the mount goes away.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config/index.js';
import { fileControl, mount, type FuseMount } from './fuse/index.js';
import type { Logger } from './log.js';
import { Store } from './store/store.js';
import { startHttpServer } from './http/server.js';
import { runExec, type SupervisedApp } from './cli/exec.js';
import { Streamer } from './replication/streamer.js';
import { Follower } from './replication/follower.js';
import type { Role } from './store/db.js';

/** The role a static lease gives: `candidate: true` is the primary. */
function staticRole(config: Config): Role {
  if (config.lease.type !== 'static') {
    throw new Error(`lease.type "${config.lease.type}" is not supported yet; use "static" (candidate: true on the primary, false on replicas)`);
  }
  return config.lease.candidate ? 'primary' : 'replica';
}

export interface RunningNode {
  store: Store;
  fuse: FuseMount;
  httpUrl: string;
  /** Resolves with the exit code when the node has stopped. */
  done: Promise<number>;
  stop(code?: number): Promise<void>;
}

/** A random id for this node's data directory, kept across restarts. */
function nodeId(dataDir: string): bigint {
  const file = path.join(dataDir, 'id');
  try {
    return BigInt('0x' + fs.readFileSync(file, 'utf8').trim());
  } catch {
    const id = crypto.randomBytes(8).toString('hex');
    fs.writeFileSync(file, id + '\n');
    return BigInt('0x' + id);
  }
}

export async function startNode(config: Config, log: Logger): Promise<RunningNode> {
  const role = staticRole(config);
  fs.mkdirSync(config.data.dir, { recursive: true });
  const scratchDir = path.join(config.data.dir, 'tmp');
  fs.rmSync(scratchDir, { recursive: true, force: true }); // half-received snapshots of an earlier run
  const hostname = config.lease.hostname || os.hostname();
  const store = new Store({
    role,
    dataDir: config.data.dir,
    files: fileControl,
    log,
    compress: config.data.compress,
    strictVerify: config.strictVerify,
    retention: config.data.retention,
    retentionMonitorInterval: config.data.retentionMonitorInterval,
    nodeId: nodeId(config.data.dir),
  });
  store.open();
  let fuse: FuseMount;
  try {
    fuse = mount(config.fuse.dir, store.dbDir, store.handle, {
      debug: config.fuse.debug,
      allowOther: config.fuse.allowOther,
      handleSignals: false,
      // An unexpected failure on the commit path: the commit was refused; with
      // exit-on-error (LiteFS's default) the node stops rather than go on unsure.
      onHandlerError: (err, ev) => {
        log.error({ event: ev.type, file: ev.name, err: (err as Error).message }, 'commit path error');
        if (config.exitOnError) void stopOnError();
      },
    });
  } catch (err) {
    store.close();
    throw err;
  }
  if (fuse.clearedDeadMount) log.warn({ dir: fuse.dir }, 'cleared a dead mount left by an earlier process');
  log.info({ dir: fuse.dir }, 'mounted');
  log.info({ dir: config.data.dir }, 'data directory');
  store.setMountDir(fuse.dir);
  log.info({ role, lease: config.lease.type, ...(role === 'replica' ? { primary: config.lease.advertiseUrl } : {}) }, 'role');
  fileControl.setVirtualFile('.lag', '0\n');
  const streamer = role === 'primary' ? new Streamer({ store, log, mountDir: fuse.dir, compress: config.data.compress, heartbeatMs: 1000, hello: () => ({ version: 1, hostname, advertiseUrl: config.lease.advertiseUrl, nodeId: store.nodeIdHex, heartbeatMs: 1000 }) }) : undefined;
  const follower =
    role === 'replica'
      ? new Follower({ store, files: fileControl, log, primaryUrl: config.lease.advertiseUrl, hostname: os.hostname(), reconnectDelay: config.lease.reconnectDelay, scratchDir })
      : undefined;

  const stopOnError = async () => {
    log.fatal({ code: 99 }, 'exiting after a commit path error (exit-on-error)');
    await stop(99);
  };

  // Signals are handled from here on, so a stop during startup still unmounts.
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  let app: SupervisedApp | undefined;
  let http: { app: FastifyInstance; url: string } | undefined;
  let stopping = false;
  const stop = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    streamer?.close();
    await follower?.stop();
    await http?.app.close().catch(() => undefined);
    if (fuse.isMounted) fuse.unmount();
    store.close();
    resolveDone(code);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, 'stopping');
    if (app) app.signal(sig); // the app exits, then so do we (below)
    else void stop(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  fuse.on('unmounted', () => {
    log.error({ dir: fuse.dir }, 'the mount went away; stopping');
    void stop(1);
  });

  try {
    http = await startHttpServer(
      config.http.addr,
      store,
      {
        hostname,
        advertiseUrl: config.lease.advertiseUrl,
        candidate: config.lease.candidate,
        isPrimary: () => store.role === 'primary',
        primaryHostname: () => (store.role === 'primary' ? hostname : follower?.primary),
        streamer: () => streamer,
      },
      log,
      fuse.dir,
    );
  } catch (err) {
    await stop(1);
    throw new Error(`cannot listen on http.addr ${config.http.addr}: ${(err as Error).message}`);
  }
  log.info({ addr: http.url }, 'http server listening');
  const httpUrl = http.url;
  follower?.start();

  try {
    app = await runExec(config.exec, { isCandidate: config.lease.candidate, log });
  } catch (err) {
    log.error({ err: (err as Error).message }, 'exec failed');
    await stop(1);
    return { store, fuse, httpUrl, done, stop };
  }
  if (app) {
    log.info({ pid: app.pid }, 'application started');
    void app.exited.then((code) => {
      log.info({ code }, 'application exited');
      void stop(code);
    });
  }
  return { store, fuse, httpUrl, done, stop };
}
