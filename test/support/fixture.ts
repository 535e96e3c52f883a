// A mount served by a child process, driven over IPC by a test. Tests must
// not serve FUSE in their own process: a synchronous client there (e.g.
// better-sqlite3) would block the thread that answers the mount's events.
//
// Child: node fixture.js <mountDir> <dataDir>. It names database families
// by suffix (a test policy, not the product's) and reports every event.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before } from 'node:test';
import { tempDirs } from './clients.js';
import { fileURLToPath } from 'node:url';
import { mount, MountedFileLock, type FileOptions, type FuseEvent, type FuseMount } from '../../src/fuse/index.js';

type Command =
  | { cmd: 'setFile'; name: string; opts: FileOptions }
  | { cmd: 'setVirtual'; name: string; content: string | null }
  | { cmd: 'takeDirty'; name: string }
  | { cmd: 'invalidate'; name: string; entry?: boolean }
  | { cmd: 'lock'; path: string; kind: 'read' | 'write'; start: number; len: number; wait: boolean }
  | { cmd: 'unlockAll'; path: string }
  | { cmd: 'failNext'; type: FuseEvent['type']; errno: string; times?: number }
  | { cmd: 'clearFailures' }
  /** From now on each walCommit notice blocks this thread for ms, then checks its frame is still in the backing WAL and counts itself in the virtual file `counter`. */
  | { cmd: 'stallNotices'; ms: number; counter: string }
  /** From now on each event of this type holds the JavaScript thread for ms before it is answered. */
  | { cmd: 'slowAnswers'; type: FuseEvent['type']; ms: number }
  | { cmd: 'unmount' };

/** Flags the fixture gives a new name, by its suffix. */
export function familyOptions(name: string, pageSize = 4096, fsync = true): FileOptions {
  if (name.endsWith('-wal')) return { events: true, fsync, wal: true };
  if (name.endsWith('-journal')) return { events: true, fsync, journal: true };
  if (name.endsWith('-shm')) return { events: true };
  return { events: true, fsync, dirtyPages: true, pageSize };
}

type Policy = 'plain' | 'family' | 'quiet';

function runChild(mountDir: string, dataDir: string, policy: Policy): void {
  const plain = policy === 'plain';
  const locks = new Map<string, MountedFileLock>();
  const failNext = new Map<string, string[]>();
  const configured = new Set<string>();
  let stall: { ms: number; counter: string; handled: number } | undefined;
  let slow: { type: FuseEvent['type']; ms: number } | undefined;
  const hold = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  let fuse: FuseMount;
  const send = (msg: unknown) => process.send?.(msg);
  fuse = mount(
    mountDir,
    dataDir,
    (ev) => {
      // A name the test configured keeps its options (e.g. readOnly).
      if (ev.type === 'create' && !configured.has(ev.name) && !plain) fuse.setFile(ev.name, familyOptions(ev.name, 4096, policy !== 'quiet'));
      if (policy !== 'quiet') send({ event: ev });
      if (slow && ev.type === slow.type) hold(slow.ms);
      if (stall && ev.type === 'walCommit' && !ev.waiting) {
        hold(stall.ms);
        const frame = Buffer.alloc(ev.length);
        const fd = fs.openSync(path.join(dataDir, ev.name), 'r');
        const n = fs.readSync(fd, frame, 0, ev.length, ev.offset);
        fs.closeSync(fd);
        send({ event: { type: 'noticeChecked', name: ev.name, frameIntact: n === ev.length && frame.readUInt32BE(4) === ev.commitSize } });
        fuse.setVirtualFile(stall.counter, String(++stall.handled));
      }
      const errno = failNext.get(ev.type)?.shift();
      if (errno) return errno as 'EIO';
      return undefined;
    },
    { handleSignals: true },
  );
  fuse.on('unmounted', () => process.exit(0));
  process.on('message', async (msg: Command & { id: number }) => {
    try {
      let result: unknown = null;
      switch (msg.cmd) {
        case 'setFile': fuse.setFile(msg.name, msg.opts); configured.add(msg.name); break;
        case 'setVirtual': fuse.setVirtualFile(msg.name, msg.content); break;
        case 'takeDirty': result = Array.from(fuse.takeDirtyPages(msg.name)); break;
        case 'invalidate': await fuse.invalidate(msg.name, { entry: msg.entry ?? false }); break;
        case 'lock': {
          let l = locks.get(msg.path);
          if (!l) locks.set(msg.path, (l = await MountedFileLock.open(msg.path)));
          result = await l.lock(msg.kind, msg.start, msg.len, { wait: msg.wait });
          break;
        }
        case 'unlockAll': await locks.get(msg.path)?.close(); locks.delete(msg.path); break;
        case 'failNext': failNext.set(msg.type, [...(failNext.get(msg.type) ?? []), ...Array<string>(msg.times ?? 1).fill(msg.errno)]); break;
        case 'clearFailures': failNext.clear(); break;
        case 'slowAnswers': slow = { type: msg.type, ms: msg.ms }; break;
        case 'stallNotices': stall = { ms: msg.ms, counter: msg.counter, handled: 0 }; fuse.setVirtualFile(msg.counter, '0'); break;
        case 'unmount':
          for (const l of locks.values()) await l.close();
          fuse.unmount();
          send({ id: msg.id, result: null });
          process.exit(0);
      }
      send({ id: msg.id, result });
    } catch (err) {
      send({ id: msg.id, error: (err as Error).message });
    }
  });
  send({ ready: true, clearedDeadMount: fuse.clearedDeadMount });
}

/** What a fixture reports: the mount's events, and its checks of stalled notices. */
export type FixtureEvent = FuseEvent | { type: 'noticeChecked'; name: string; frameIntact: boolean };

/** The test's handle on a fixture child. */
export class MountFixture {
  readonly events: FixtureEvent[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  clearedDeadMount = false;

  private constructor(readonly child: ChildProcess, readonly mountDir: string, readonly dataDir: string) {}

  /**
   * policy: 'family' (default) flags database families and reports events;
   * 'quiet' flags them but answers events without reporting them (benchmarks);
   * 'plain' is a pure passthrough: no file gets flags, so no events but create.
   */
  static start(mountDir: string, dataDir: string, opts: { policy?: Policy } = {}): Promise<MountFixture> {
    const child = fork(fileURLToPath(import.meta.url), [mountDir, dataDir, opts.policy ?? 'family'], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    const fx = new MountFixture(child, mountDir, dataDir);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    return new Promise((resolve, reject) => {
      child.on('message', (msg: { ready?: boolean; clearedDeadMount?: boolean; event?: FixtureEvent; id?: number; result?: unknown; error?: string }) => {
        if (msg.ready) {
          fx.clearedDeadMount = msg.clearedDeadMount ?? false;
          resolve(fx);
        } else if (msg.event) fx.events.push(msg.event);
        else if (msg.id !== undefined) {
          const w = fx.waiting.get(msg.id);
          fx.waiting.delete(msg.id);
          if (msg.error) w?.reject(new Error(msg.error));
          else w?.resolve(msg.result);
        }
      });
      child.on('exit', (code) => {
        for (const w of fx.waiting.values()) w.reject(new Error(`fixture exited (${code}): ${stderr.trim()}`));
        reject(new Error(`fixture exited (${code}): ${stderr.trim()}`));
      });
    });
  }

  call<T = unknown>(cmd: Command): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...cmd, id });
    });
  }

  eventsOf<T extends FixtureEvent['type']>(type: T, name?: string): Extract<FixtureEvent, { type: T }>[] {
    return this.events.filter((e) => e.type === type && (name === undefined || e.name === name)) as Extract<FixtureEvent, { type: T }>[];
  }

  /** Unmounts and waits for the child to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    await this.call({ cmd: 'unmount' }).catch(() => undefined);
    await exited;
  }

  /** kill -9, leaving a dead mount behind. */
  async kill9(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/** In a describe(): a fixture mount over fresh temp dirs for the suite, stopped and removed after it. */
export function useMountFixture(): { dirs: ReturnType<typeof tempDirs>; readonly fx: MountFixture } {
  const dirs = tempDirs();
  let fx: MountFixture | undefined;
  before(async () => {
    fx = await MountFixture.start(dirs.mnt, dirs.data);
  });
  after(async () => {
    await fx?.stop();
    dirs.cleanup();
  });
  return {
    dirs,
    get fx() {
      return fx!;
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mountDir, dataDir, policy] = process.argv.slice(2);
  if (!mountDir || !dataDir) throw new Error('usage: fixture <mountDir> <dataDir> [family|quiet|plain]');
  runChild(mountDir, dataDir, (policy ?? 'family') as Policy);
}
