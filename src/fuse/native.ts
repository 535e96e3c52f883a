// The compiled libfuse3 addon (native/), loaded once, with its raw types.
// Everything else uses the typed wrapper in mount.ts and locks.ts.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface RawEvent {
  /** What reply() answers; 0 when nobody waits (a notice, or the unmounted notice). */
  id: number;
  type: string;
  path?: string;
  path2?: string;
  offset: number;
  length: number;
  arg: number;
  pageSize: number;
}

export interface NativeAddon {
  mount(
    dir: string,
    backingDir: string,
    dispatch: (ev: RawEvent) => void,
    options: { debug?: boolean; allowOther?: boolean; maxThreads?: number },
  ): void;
  unmount(): void;
  reply(id: number, errno: number): boolean;
  /** Notices queued by FUSE threads and not yet handled here. */
  pendingNotices(): number;
  /** Hands the queued notices to the dispatcher now; how many there were. */
  deliverNotices(): number;
  /** true: JavaScript polls for notices, so they need not wake it; false: wake it. */
  pollNotices(on: boolean): void;
  setFile(path: string, flags: number, pageSize: number): void;
  setVirtual(path: string, data: Buffer | null, mtimeMs: number): void;
  takeDirtyPages(path: string): Uint32Array;
  lock(fd: number, type: number, start: number, len: number, wait: boolean): Promise<boolean>;
  invalidate(path: string, entry: boolean): Promise<boolean>;
  /** Puts bytes already written to the backing file into the kernel's cache of the mounted file with this st_ino. */
  storePages(nodeId: number, offset: number, data: Buffer): void;
  /** A buffer whose memory starts on a 4096-byte boundary, for writes to a file opened with O_DIRECT. */
  alignedBuffer(size: number): Buffer;
  /** Has the kernel read this range of the file into its page cache in the background (posix_fadvise WILLNEED). */
  readAhead(fd: number, offset: number, length: number): void;
}

/** Bits of the per-file flags the addon understands (native/lfs.h). */
export const FileFlag = {
  events: 1 << 0,
  wal: 1 << 1,
  journal: 1 << 2,
  dirtyPages: 1 << 3,
  readOnly: 1 << 4,
  directIo: 1 << 5,
  fsync: 1 << 6,
  walWait: 1 << 7,
} as const;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!addon) {
    const file = path.join(root, 'build', 'Release', 'litefs_fuse.node');
    try {
      addon = createRequire(import.meta.url)(file) as NativeAddon;
    } catch (err) {
      throw new Error(`cannot load the FUSE addon ${file} (run etc/setup.sh): ${(err as Error).message}`);
    }
  }
  return addon;
}
