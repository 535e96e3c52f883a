// The typed face of the native FUSE layer: mount a directory over a backing
// directory, receive decision-point events, and set per-file state.
import { EventEmitter } from 'node:events';
import { FileFlag, native, type RawEvent } from './native.js';
import { errnoNumber, type ErrnoName } from './errno.js';
import { prepareMountPoint } from './mountpoint.js';

/** Events name files relative to the mount root, e.g. "db.sqlite-wal". */
export type FuseEvent =
  | { type: 'create'; name: string; mode: number }
  | { type: 'unlink'; name: string }
  | { type: 'rename'; name: string; newName: string }
  | { type: 'truncate'; name: string; size: number }
  | { type: 'fsync'; name: string; datasync: boolean }
  /**
   * A write completed a WAL frame whose header marks a commit. Unless the
   * file has walWait, the write did not wait (waiting false): the frames
   * stay in the WAL until the notice is handled (see FileControl.settled).
   */
  | { type: 'walCommit'; name: string; offset: number; length: number; commitSize: number; pageSize: number; waiting: boolean }
  /** A journal that carried the magic was deleted, truncated to 0 or zeroed. */
  | { type: 'journalInvalidated'; name: string; reason: 'unlink' | 'truncate' | 'zeroed' }
  /** C waits until the notices queued before this are handled (name ''); the answer is ignored. */
  | { type: 'settle'; name: string };

/**
 * Answers an event: nothing (or undefined) lets the operation succeed; an
 * errno name fails it with that error. The operation waits meanwhile,
 * except for notices (walCommit without walWait), whose answer is dropped.
 */
export type EventHandler = (ev: FuseEvent) => void | ErrnoName | Promise<void | ErrnoName>;

export interface FileOptions {
  /** Report create/unlink/rename/truncate of this file. */
  events?: boolean;
  /** Report fsync of this file (an event on the commit path under synchronous=FULL). */
  fsync?: boolean;
  /** Report writes completing WAL commit frames (the -wal file), as notices. */
  wal?: boolean;
  /** Make those writes wait for the handler's answer (which may fail them). */
  walWait?: boolean;
  /** Report invalidation of a live rollback journal (the -journal file). */
  journal?: boolean;
  /** Record pages written (the database file); needs pageSize. */
  dirtyPages?: boolean;
  pageSize?: number;
  /** Refuse writes and write-opens from other processes (EROFS). */
  readOnly?: boolean;
  /** Bypass the kernel page cache (otherwise cached, kept across opens). */
  directIo?: boolean;
}

export interface MountOptions {
  debug?: boolean;
  allowOther?: boolean;
  maxThreads?: number;
  /** Unmount and exit on SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
  /** Where errors thrown by handlers are reported (default: stderr). */
  onHandlerError?: (err: unknown, ev: FuseEvent) => void;
}

/**
 * Per-file state of the native layer. Usable before mount(), so a store can
 * flag its files before any application can reach them.
 */
export interface FileControl {
  /** Sets what the native layer does for one file name (replacing earlier options). */
  setFile(name: string, opts: FileOptions): void;
  /** Serves a read-only file from memory; null removes it. */
  setVirtualFile(name: string, content: string | Buffer | null, mtime?: Date): void;
  /** Units written to a dirtyPages file since the last call (numbered from 1, in pageSize units). */
  takeDirtyPages(name: string): Uint32Array;
  /** Drops the kernel's cached pages and attributes of a file (once mounted). */
  invalidate(name: string): Promise<void>;
  /**
   * Puts bytes the caller has already written to a backing file into the
   * kernel's cache of the mounted file whose st_ino is `nodeId` (once mounted).
   */
  storePages(nodeId: number, offset: number, data: Buffer): void;
  /** Resolves once every notice queued so far has been handled (at most timeoutMs). */
  settled(timeoutMs?: number): Promise<void>;
  /** Notices queued and not yet handled, counting the one being handled. */
  pendingNotices(): number;
}

export const fileControl: FileControl = {
  setFile(name, opts) {
    let flags = 0;
    for (const key of ['events', 'fsync', 'wal', 'walWait', 'journal', 'dirtyPages', 'readOnly', 'directIo'] as const) {
      if (opts[key]) flags |= FileFlag[key];
    }
    native().setFile('/' + name, flags, opts.pageSize ?? 0);
  },
  setVirtualFile(name, content, mtime) {
    const data = content === null ? null : Buffer.from(content);
    native().setVirtual('/' + name, data, mtime ? mtime.getTime() : 0);
  },
  takeDirtyPages(name) {
    return native().takeDirtyPages('/' + name);
  },
  async invalidate(name) {
    await native().invalidate('/' + name, false);
  },
  storePages(nodeId, offset, data) {
    native().storePages(nodeId, offset, data);
  },
  pendingNotices() {
    return native().pendingNotices();
  },
  async settled(timeoutMs = 5000) {
    native().deliverNotices(); // their handlers do not wait: handled when this returns
    // One still being handled lower on this thread's stack finishes between turns of the event loop.
    const deadline = Date.now() + timeoutMs;
    while (native().pendingNotices() > 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  },
};

function toEvent(raw: RawEvent): FuseEvent {
  const name = (raw.path ?? '/').slice(1);
  switch (raw.type) {
    case 'create': return { type: 'create', name, mode: raw.arg };
    case 'unlink': return { type: 'unlink', name };
    case 'rename': return { type: 'rename', name, newName: (raw.path2 ?? '/').slice(1) };
    case 'truncate': return { type: 'truncate', name, size: raw.arg };
    case 'fsync': return { type: 'fsync', name, datasync: raw.arg !== 0 };
    case 'walCommit':
      return { type: 'walCommit', name, offset: raw.offset, length: raw.length, commitSize: raw.arg, pageSize: raw.pageSize, waiting: raw.id !== 0 };
    case 'journalInvalidated':
      return { type: 'journalInvalidated', name, reason: raw.path2 as 'unlink' | 'truncate' | 'zeroed' };
    case 'settle': return { type: 'settle', name: '' };
    default: throw new Error(`unknown FUSE event ${raw.type}`);
  }
}

let current: FuseMount | undefined;

/** How often JavaScript looks for commit notices while they keep coming (replication lag grows by up to this). */
const NOTICE_POLL_MS = 1;

/** One mounted directory. The process serves at most one at a time. */
export class FuseMount extends EventEmitter implements FileControl {
  private mounted = true;
  /** A dead mount left at dir by a killed process was cleared first. */
  clearedDeadMount = false;
  private readonly signalHandler?: (sig: NodeJS.Signals) => void;

  constructor(
    readonly dir: string,
    readonly dataDir: string,
    private readonly handler: EventHandler,
    private readonly options: MountOptions,
  ) {
    super();
    if (options.handleSignals !== false) {
      this.signalHandler = (sig) => {
        this.unmount();
        process.kill(process.pid, sig); // our handler is gone: default action
      };
      process.once('SIGINT', this.signalHandler);
      process.once('SIGTERM', this.signalHandler);
    }
  }

  private pollTimer?: NodeJS.Timeout;

  /**
   * Commit notices are coming: look for more every NOTICE_POLL_MS rather
   * than be woken for each (native/events.c says why); when a look finds
   * none, ask to be woken again.
   */
  private pollForNotices(): void {
    if (this.pollTimer || !this.mounted) return;
    native().pollNotices(true);
    this.pollTimer = setTimeout(this.pollNotices, NOTICE_POLL_MS);
  }

  private readonly pollNotices = (): void => {
    this.pollTimer = undefined;
    if (!this.mounted || native().deliverNotices() > 0) return; // each notice polls again
    native().pollNotices(false);
    native().deliverNotices(); // one queued before the switch found us polling
  };

  /** Called by the addon on the JavaScript thread for each event. */
  dispatch(raw: RawEvent): void {
    if (raw.id === 0 && raw.type !== 'unmounted') this.pollForNotices();
    if (raw.type === 'unmounted') {
      if (this.mounted) this.unmount();
      this.emit('unmounted');
      return;
    }
    let ev: FuseEvent;
    try {
      ev = toEvent(raw);
    } catch (err) {
      native().reply(raw.id, errnoNumber('EIO'));
      this.reportError(err, { type: 'unlink', name: raw.path ?? '' });
      return;
    }
    const answer = (result: void | ErrnoName) => {
      if (raw.id !== 0) native().reply(raw.id, result ? errnoNumber(result) : 0);
    };
    const fail = (err: unknown) => {
      const code = (err as { code?: unknown }).code;
      if (raw.id !== 0) native().reply(raw.id, errnoNumber(typeof code === 'string' && code.startsWith('E') ? code : 'EIO'));
      this.reportError(err, ev);
    };
    try {
      const result = this.handler(ev);
      if (result instanceof Promise) result.then(answer, fail);
      else answer(result);
    } catch (err) {
      fail(err);
    }
  }

  private reportError(err: unknown, ev: FuseEvent): void {
    if (this.options.onHandlerError) this.options.onHandlerError(err, ev);
    else process.stderr.write(`litefs: fuse ${ev.type} ${ev.name}: ${(err as Error).message ?? err}\n`);
  }

  setFile(name: string, opts: FileOptions): void {
    fileControl.setFile(name, opts);
  }

  setVirtualFile(name: string, content: string | Buffer | null, mtime?: Date): void {
    fileControl.setVirtualFile(name, content, mtime);
  }

  takeDirtyPages(name: string): Uint32Array {
    return fileControl.takeDirtyPages(name);
  }

  /** Drops the kernel's cached pages and attributes of a file, and optionally its entry. */
  async invalidate(name: string, opts: { entry?: boolean } = {}): Promise<void> {
    await native().invalidate('/' + name, opts.entry ?? false);
  }

  storePages(nodeId: number, offset: number, data: Buffer): void {
    fileControl.storePages(nodeId, offset, data);
  }

  settled(timeoutMs?: number): Promise<void> {
    return fileControl.settled(timeoutMs);
  }

  pendingNotices(): number {
    return fileControl.pendingNotices();
  }

  /** Unmounts (lazily: open files see the mount vanish) and stops serving. */
  unmount(): void {
    if (!this.mounted) return;
    this.mounted = false;
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    native().pollNotices(false);
    if (this.signalHandler) {
      process.removeListener('SIGINT', this.signalHandler);
      process.removeListener('SIGTERM', this.signalHandler);
    }
    native().unmount();
    if (current === this) current = undefined;
  }

  get isMounted(): boolean {
    return this.mounted;
  }
}

/**
 * Mounts `dir`, passing file I/O through to `dataDir` in C and asking
 * `handler` at decision points. Throws MountError with a one-line message
 * on bad input; clears a dead mount left at `dir` by a killed process.
 */
export function mount(dir: string, dataDir: string, handler: EventHandler, options: MountOptions = {}): FuseMount {
  if (current) throw new Error(`this process already serves a mount at ${current.dir}`);
  const dirs = prepareMountPoint(dir, dataDir);
  const addon = native();
  let fuse: FuseMount | undefined;
  addon.mount(dirs.mountDir, dirs.dataDir, (raw) => fuse?.dispatch(raw), {
    debug: options.debug ?? false,
    allowOther: options.allowOther ?? false,
    maxThreads: options.maxThreads ?? 16,
  });
  fuse = new FuseMount(dirs.mountDir, dirs.dataDir, handler, options);
  current = fuse;
  fuse.clearedDeadMount = dirs.clearedDeadMount;
  return fuse;
}
