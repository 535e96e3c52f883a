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
import { ClusterIdFile, createLeaser, NodeLifecycle, type PrimaryInfo } from './lease/index.js';
import { parseHostPort } from './config/index.js';
import { BackupUploader, hasNoDatabases, openBackup, RestoreError, restoreDataDir } from './backup/index.js';

/** This node as the lease names a primary. A static replica's lease config names the primary, not itself. */
function selfInfo(config: Config): PrimaryInfo {
  if (config.lease.type === 'static' && !config.lease.candidate) {
    const hostname = os.hostname();
    return { hostname, advertiseUrl: `http://${hostname}:${parseHostPort(config.http.addr)?.port ?? 20202}` };
  }
  return { hostname: config.lease.hostname || os.hostname(), advertiseUrl: config.lease.advertiseUrl };
}

export interface RunningNode {
  store: Store;
  lifecycle: NodeLifecycle;
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
  fs.mkdirSync(config.data.dir, { recursive: true });
  const scratchDir = path.join(config.data.dir, 'tmp');
  fs.rmSync(scratchDir, { recursive: true, force: true }); // half-received snapshots of an earlier run
  const self = selfInfo(config);
  const hostname = self.hostname;
  // Every node starts as a replica: it becomes primary by taking the lease.
  const store = new Store({
    role: 'replica',
    recoverAs: config.lease.candidate ? 'primary' : 'replica',
    dataDir: config.data.dir,
    files: fileControl,
    log,
    compress: config.data.compress,
    strictVerify: config.strictVerify,
    cacheJournals: config.fuse.cacheJournals,
    retention: config.data.retention,
    retentionMonitorInterval: config.data.retentionMonitorInterval,
    nodeId: nodeId(config.data.dir),
  });
  const backup = config.backup ? await openBackup(config.backup) : undefined;
  if (backup && hasNoDatabases(store.dbDir)) {
    try {
      const n = await restoreDataDir({ ...backup, dbDir: store.dbDir, logRoot: path.join(config.data.dir, 'txlog'), compress: config.data.compress, log });
      if (n === 0) log.info({ bucket: backup.objects.label }, 'no databases here and none in the backup: starting empty');
    } catch (err) {
      // A candidate starting empty while its backup is unreadable could become a primary without the data.
      if (config.lease.candidate) {
        store.close();
        throw new RestoreError(`cannot restore from the backup (${(err as Error).message}); fix backup: in the config, or start with the databases in place`);
      }
      log.warn({ err: (err as Error).message }, 'could not restore from the backup; the primary will send snapshots');
    }
  }
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
  fileControl.setVirtualFile('.lag', '0\n');
  const clusterIds = new ClusterIdFile(config.data.dir);
  const streamer = new Streamer({
    store, log, mountDir: fuse.dir, compress: config.data.compress, heartbeatMs: 1000,
    hello: () => ({ version: 1, hostname, advertiseUrl: self.advertiseUrl, nodeId: store.nodeIdHex, clusterId: clusterIds.read(), heartbeatMs: 1000 }),
  });
  const leaser = await createLeaser(config.lease, self, log);
  log.info({ lease: config.lease.type, backend: leaser.describe, candidate: config.lease.candidate }, 'lease');
  const lifecycle = new NodeLifecycle({
    leaser, store, streamer, log, self, clusterIds,
    candidate: config.lease.candidate,
    promoteWhenReady: config.lease.promote,
    reconnectDelay: config.lease.reconnectDelay,
    demoteDelay: config.lease.demoteDelay,
    newFollower: (primaryUrl) =>
      new Follower({ store, files: fileControl, log, primaryUrl, hostname, nodeId: store.nodeIdHex, clusterId: () => clusterIds.read(), reconnectDelay: config.lease.reconnectDelay, scratchDir }),
  });
  const uploader = backup ? new BackupUploader({ store, ...backup, mountDir: fuse.dir, log }) : undefined;
  if (uploader) store.retentionFloor = (db) => uploader.retentionFloor(db);
  lifecycle.on('role', (role: string) => {
    log.info({ role }, 'role');
    if (uploader && !stopping) {
      if (role === 'primary') uploader.start();
      else void uploader.stop();
    }
    if (role === 'primary') fileControl.setVirtualFile('.lag', '0\n');
  });
  lifecycle.on('fatal', () => void stop(1));

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
    await lifecycle.stop();
    await fuse.settled(); // commits still queued as notices reach the log
    await uploader?.flushAndStop(3000); // what was committed before writes stopped
    streamer.close();
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
        advertiseUrl: self.advertiseUrl,
        candidate: config.lease.candidate,
        isPrimary: () => lifecycle.isPrimary,
        primaryHostname: () => lifecycle.primaryHostname,
        streamer: () => (lifecycle.isPrimary ? streamer : undefined),
        clusterId: () => clusterIds.read(),
        lagMs: () => lifecycle.currentFollower?.lag ?? 0,
        lifecycle,
        ...(uploader ? { backup: () => uploader.status() } : {}),
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
  lifecycle.start();

  // Apps start once this node is primary or caught up with one (as LiteFS does).
  await Promise.race([lifecycle.ready, done]);
  if (stopping) return { store, lifecycle, fuse, httpUrl, done, stop };
  try {
    app = await runExec(config.exec, { isCandidate: config.lease.candidate, log });
  } catch (err) {
    log.error({ err: (err as Error).message }, 'exec failed');
    await stop(1);
    return { store, lifecycle, fuse, httpUrl, done, stop };
  }
  if (app) {
    log.info({ pid: app.pid }, 'application started');
    void app.exited.then((code) => {
      log.info({ code }, 'application exited');
      void stop(code);
    });
  }
  return { store, lifecycle, fuse, httpUrl, done, stop };
}
