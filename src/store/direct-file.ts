// A new file written once, in large page-aligned pieces, past the page
// cache: a replica's incoming snapshot of a database it does not have yet.
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
import fs from 'node:fs';
import { native } from '../fuse/native.js';
import { writeAt } from './apply.js';

export class DirectFileWriter {
  private direct: boolean;
  /** Two aligned buffers used by turns: one being written, one being filled. */
  private readonly aligned: Buffer[] = [];
  private turn = 0;
  /** The write in flight: one at a time, so what is held stays bounded. */
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly file: string,
    private fd: number,
    direct: boolean,
  ) {
    this.direct = direct;
  }

  /** Creates (or empties) `file`; with `bypassCache`, O_DIRECT where the file system takes it. */
  static create(file: string, bypassCache = true): DirectFileWriter {
    const { O_WRONLY, O_CREAT, O_TRUNC, O_DIRECT } = fs.constants;
    if (bypassCache && O_DIRECT !== undefined) {
      try {
        return new DirectFileWriter(file, fs.openSync(file, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0o644), true);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
    }
    return new DirectFileWriter(file, fs.openSync(file, 'w', 0o644), false);
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
    if (this.direct) {
      // Copied while the write before it is still going: that one holds the other buffer.
      out = this.alignedFor(data.length).subarray(0, data.length);
      data.copy(out);
    }
    await this.writing;
    this.writing = this.writeOnce(out, offset);
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

  private alignedFor(length: number): Buffer {
    const i = this.turn++ % 2;
    if (!this.aligned[i] || this.aligned[i]!.length < length) this.aligned[i] = native().alignedBuffer(Math.max(length, 1 << 20));
    return this.aligned[i]!;
  }

  private async writeOnce(buf: Buffer, offset: number): Promise<void> {
    try {
      await writeAt(this.fd, buf, offset);
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
