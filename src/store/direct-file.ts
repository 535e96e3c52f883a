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
/** Free slabs an AlignedPool keeps: one being written, one whose run waits, one being filled, and a spare. */
const POOL_KEEPS = 4;
/**
 * Bytes of a slab, and so of the largest write: chunks handed out one after
 * another lie back to back in a slab, and DirectFileWriter writes such a
 * run with one call. On this project's VM a 1 GiB restore streamed its
 * snapshot in 2.9 s with 4 MiB writes against 3.1 s with 1 MiB ones
 * (five alternating pairs; docs/backup.md).
 */
const SLAB_BYTES = 4 * 1024 * 1024;

interface Slab {
  buf: Buffer;
  /** Bytes handed out from the start (the next take() goes after them). */
  used: number;
  /** Views handed out and not given back yet. */
  out: number;
}

/**
 * Page-aligned memory for incoming snapshot chunks (RecordReader's
 * snapshotMemory, the lz4 decoder's output): a chunk is placed with its
 * pages on a 4096-byte boundary, right after the chunk before it when the
 * slab has room, and DirectFileWriter writes from there and gives the
 * memory back once the write is done. A slab is reused once every view of
 * it is back.
 */
export class AlignedPool {
  private readonly free: Slab[] = [];
  private filling?: Slab;
  /** Each slab this pool made, by the memory its views share. */
  private readonly made = new WeakMap<ArrayBufferLike, Slab>();

  /** `size` bytes whose byte `prefix` lies on a 4096-byte boundary. */
  readonly take = (prefix: number, size: number): Buffer => {
    const at = (slab: Slab) => Math.ceil((slab.used + prefix) / ALIGN) * ALIGN - prefix;
    let slab = this.filling;
    if (!slab || at(slab) + size > slab.buf.length) {
      if (slab && slab.out === 0) this.release(slab);
      const i = this.free.findIndex((b) => b.buf.length >= ALIGN + size);
      slab = this.filling = i >= 0 ? this.free.splice(i, 1)[0]! : this.allocate(ALIGN + size);
    }
    const start = at(slab);
    slab.used = start + size;
    slab.out++;
    return slab.buf.subarray(start, start + size);
  };

  /** Whether `view` is memory of this pool that starts on a 4096-byte boundary. */
  holdsAligned(view: Buffer): boolean {
    return this.made.has(view.buffer) && view.byteOffset % ALIGN === 0;
  }

  /** The memory `view` lies in is free again (its write is done); memory not from this pool is ignored. */
  giveBack(view: Buffer): void {
    const slab = this.made.get(view.buffer);
    if (!slab || slab.out === 0) return;
    if (--slab.out > 0) return;
    if (slab === this.filling) slab.used = 0; // nothing of it is held: fill it again from the start
    else this.release(slab);
  }

  /** Lets go of the free slabs (a snapshot is done: the next may be years away). */
  clear(): void {
    this.free.length = 0;
    if (this.filling?.out === 0) this.filling = undefined;
  }

  private release(slab: Slab): void {
    slab.used = 0;
    if (this.free.length < POOL_KEEPS && !this.free.includes(slab)) this.free.push(slab);
  }

  private allocate(size: number): Slab {
    const buf = native().alignedBuffer(Math.max(size, SLAB_BYTES + ALIGN));
    const slab = { buf, used: 0, out: 0 };
    this.made.set(buf.buffer, slab);
    return slab;
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
  /** Data given to write() and not yet written: views lying back to back in one slab, for consecutive offsets. */
  private run?: { offset: number; bytes: Buffer; views: Buffer[] };

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
   * Writes `data` at `offset`. Past the page cache, data that continues
   * the data before it, in the file and in a slab of the pool, joins its
   * write; otherwise what is held starts for the disk once the write before
   * it has finished. The caller awaits each call before the next; `data`
   * must stay as it is until the next write() or finish() resolves (pool
   * memory is the writer's until written: it then goes back to the pool;
   * other memory is copied into the pool's). A failed write makes a later
   * call, or finish(), reject.
   */
  async write(data: Buffer, offset: number): Promise<void> {
    let out = data;
    if (this.direct && !this.pool.holdsAligned(data)) {
      // Copied while the write before it is still going: that one's memory is not back in the pool yet.
      out = this.pool.take(0, data.length);
      data.copy(out);
    }
    const run = this.run;
    if (run && this.direct && out.buffer === run.bytes.buffer && out.byteOffset === run.bytes.byteOffset + run.bytes.length && offset === run.offset + run.bytes.length) {
      run.bytes = Buffer.from(out.buffer, run.bytes.byteOffset, run.bytes.length + out.length);
      run.views.push(out);
      return;
    }
    await this.startRun();
    this.run = { offset, bytes: out, views: [out] };
    if (!this.direct) await this.startRun(); // through the page cache nothing joins: it goes at once
  }

  /** Writes what is held, sets the length and closes the file. */
  async finish(length: number): Promise<void> {
    await this.startRun();
    await this.writing;
    fs.ftruncateSync(this.fd, length);
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** After a failure: closes once the write in flight is done (closing under it would let the fd be reused mid-write); what is held is dropped. */
  abandon(): void {
    const fd = this.fd;
    this.fd = -1;
    this.run = undefined;
    if (fd >= 0) void this.writing.catch(() => {}).finally(() => fs.closeSync(fd));
  }

  /** Starts the held run's write once the one in flight has finished. */
  private async startRun(): Promise<void> {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    await this.writing;
    this.writing = this.writeOnce(run.bytes, run.offset).finally(() => {
      for (const view of run.views) this.pool.giveBack(view);
    });
    this.writing.catch(() => {}); // observed by the next write or by finish()
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
