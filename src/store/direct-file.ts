// A new file written once, in large page-aligned pieces, past the page
// cache: a replica's incoming snapshot of a database it does not have yet,
// and the snapshot a restore starts from.
// Buffered, each byte would first be copied into fresh page-cache memory,
// and for a 1 GiB snapshot that copy costs more CPU than everything else
// the replica does with it (on this project's 2-core VM: ~3.4 s of kernel
// time for 1 GiB buffered, ~0.4 s with O_DIRECT). The database is read
// back through the mount later, from the disk, page by page as readers ask.
//
// O_DIRECT wants the memory, offset and length aligned to the device's
// block size: pages are copied into a buffer from the addon that starts on
// a 4096-byte boundary, and offsets and lengths are whole pages (512 bytes
// or more). Where the file system refuses O_DIRECT (tmpfs before Linux 6.6)
// or a write is refused as misaligned (a device with 4096-byte blocks and
// smaller pages), the file is written through the page cache as before.
// An AlignedPool lets the stream reader assemble raw chunks in aligned
// memory to begin with, so their pages are written without that copy.
import fs from 'node:fs';
import { native } from '../fuse/native.js';
import { writeAt } from './file-io.js';

const ALIGN = 4096;
/**
 * Bytes per read-ahead request: Linux reads at most the larger of the
 * device's optimal I/O size and its read-ahead window per request
 * (force_page_cache_ra), and 128 KiB is the smallest common window.
 */
const READ_AHEAD_STEP = 128 * 1024;

/**
 * Asks the kernel to read `length` bytes of the file at `offset` into its
 * page cache in the background (posix_fadvise WILLNEED, in steps it
 * honours whole); ranges already cached cost a lookup. Only a hint: false
 * when the kernel refused it, which changes nothing else.
 */
export function readAhead(fd: number, offset: number, length: number): boolean {
  try {
    for (let at = offset, end = offset + length; at < end; at += READ_AHEAD_STEP) native().readAhead(fd, at, Math.min(READ_AHEAD_STEP, end - at));
    return true;
  } catch {
    return false;
  }
}
/** Free buffers an AlignedPool keeps: one being written, one being filled, one decoded and waiting, and a spare. */
const POOL_KEEPS = 4;

/**
 * Page-aligned memory for incoming snapshot chunks (RecordReader's
 * snapshotMemory): a raw chunk is assembled with its pages on a 4096-byte
 * boundary, DirectFileWriter writes them from there, and gives the memory
 * back once the write is done.
 */
export class AlignedPool {
  private readonly free: Buffer[] = [];
  /** Each buffer this pool made, by the memory its views share. */
  private readonly made = new WeakMap<ArrayBufferLike, Buffer>();

  /** `size` bytes whose byte `prefix` lies on a 4096-byte boundary. */
  readonly take = (prefix: number, size: number): Buffer => {
    const offset = (ALIGN - (prefix % ALIGN)) % ALIGN;
    const need = offset + size;
    const i = this.free.findIndex((b) => b.length >= need);
    const buf = i >= 0 ? this.free.splice(i, 1)[0]! : this.allocate(need);
    return buf.subarray(offset, offset + size);
  };

  /** Whether `view` is memory of this pool that starts on a 4096-byte boundary. */
  holdsAligned(view: Buffer): boolean {
    return this.made.has(view.buffer) && view.byteOffset % ALIGN === 0;
  }

  /** The memory `view` lies in is free again (its write is done); memory not from this pool is ignored. */
  giveBack(view: Buffer): void {
    const buf = this.made.get(view.buffer);
    if (buf && this.free.length < POOL_KEEPS && !this.free.includes(buf)) this.free.push(buf);
  }

  /** Lets go of the free buffers (a snapshot is done: the next may be years away). */
  clear(): void {
    this.free.length = 0;
  }

  private allocate(size: number): Buffer {
    const buf = native().alignedBuffer(Math.max(size, (1 << 20) + ALIGN));
    this.made.set(buf.buffer, buf);
    return buf;
  }
}

export class DirectFileWriter {
  private direct: boolean;
  /**
   * Read each directly written range back into the page cache in the
   * background (see create()): the disk does it while this process goes
   * on, where a read() later would cost the reader the page-cache fill
   * (on this project's VM, ~1.4 s of CPU for a cold read of 1 GiB, ~0.1 s
   * this way).
   */
  private readBack: boolean;
  /** The write in flight: one at a time, so what is held stays bounded. */
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: string,
    private fd: number,
    direct: boolean,
    private readonly pool: AlignedPool,
    readBack = false,
  ) {
    this.direct = direct;
    this.readBack = readBack;
  }

  /**
   * Creates (or empties) `file`; with `bypassCache`, O_DIRECT where the file
   * system takes it. Data from `pool` is written as it is and given back;
   * other data is copied into memory from it for O_DIRECT. With
   * `readBack`, what is written directly is read back into the page cache
   * in the background, for a reader that will read the whole file soon.
   */
  static create(file: string, bypassCache = true, pool = new AlignedPool(), opts: { readBack?: boolean } = {}): DirectFileWriter {
    const { O_WRONLY, O_CREAT, O_TRUNC, O_DIRECT } = fs.constants;
    if (bypassCache && O_DIRECT !== undefined) {
      try {
        return new DirectFileWriter(file, fs.openSync(file, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0o644), true, pool, opts.readBack ?? false);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
    }
    return new DirectFileWriter(file, fs.openSync(file, 'w', 0o644), false, pool);
  }

  /** Whether writes still bypass the page cache (for tests and logs). */
  get bypassesCache(): boolean {
    return this.direct;
  }

  /**
   * Starts a write of `data` at `offset` once the one before it has
   * finished; the caller awaits each call before the next. `data` must stay
   * as it is until the next write() or finish() resolves; a failed write
   * makes that call reject.
   */
  async write(data: Buffer, offset: number): Promise<void> {
    let out = data;
    if (this.direct && !this.pool.holdsAligned(data)) {
      // Copied while the write before it is still going: that one's memory is not back in the pool yet.
      out = this.pool.take(0, data.length);
      data.copy(out);
    }
    await this.writing;
    this.writing = this.writeOnce(out, offset).finally(() => this.pool.giveBack(out));
    this.writing.catch(() => {}); // observed by the next write or by finish()
  }

  /** Waits for the last write, sets the length and closes the file. */
  async finish(length: number): Promise<void> {
    await this.writing;
    fs.ftruncateSync(this.fd, length);
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** After a failure: closes once the write in flight is done (closing under it would let the fd be reused mid-write). */
  abandon(): void {
    const fd = this.fd;
    this.fd = -1;
    if (fd >= 0) void this.writing.catch(() => {}).finally(() => fs.closeSync(fd));
  }

  private async writeOnce(buf: Buffer, offset: number): Promise<void> {
    try {
      await writeAt(this.fd, buf, offset);
      if (this.readBack && this.direct) this.readBack = readAhead(this.fd, offset, buf.length);
    } catch (err) {
      if (!this.direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      // Misaligned for this device: the same file, through the page cache from here on.
      fs.closeSync(this.fd);
      this.fd = fs.openSync(this.file, 'r+');
      this.direct = false;
      await writeAt(this.fd, buf, offset);
    }
  }
}
