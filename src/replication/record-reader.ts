// The incremental parser of a stream body (docs/protocol.md): bytes go in as
// the socket delivers them, whole checked records come out.
import {
  completeRecord, failer, OFF_TYPE, readHeader, RECORD_HEADER_SIZE, RecordFlag, recordLabel, RecordType, StreamError,
  type Fail, type RecordHeader, type StreamRecord,
} from './records.js';

export interface RecordReaderOptions {
  /**
   * Memory for a raw SNAPSHOT record that spans pushed chunks: `size` bytes
   * whose byte `prefix` (header and name before it) starts the pages, so the
   * giver can place the pages as it likes (aligned, for O_DIRECT). Such a
   * record is copied in as its bytes arrive. Without it, or when it returns
   * undefined, the record is assembled in fresh memory.
   */
  snapshotMemory?: (prefix: number, size: number) => Buffer | undefined;
  /**
   * Memory for an lz4 SNAPSHOT record that spans pushed chunks, which the
   * giver reuses: such a record is valid only until next() is called again
   * (its payload is decompressed before that). Joining a gigabyte of socket
   * reads into fresh records is garbage that has V8 collect every few
   * tens of milliseconds.
   */
  compressedSnapshotScratch?: (size: number) => Buffer;
}

/**
 * Holds at most the record in progress plus the rest of the last chunk
 * pushed; checks a header as soon as its 80 bytes are in, before its lengths
 * are trusted.
 */
export class RecordReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The record in progress, when it is being copied into snapshotMemory. */
  private assembly: { bytes: Buffer; filled: number } | undefined;
  private header: RecordHeader | undefined;
  private returned = 0;
  private failure: StreamError | undefined;

  constructor(private readonly opts: RecordReaderOptions = {}) {}

  push(chunk: Buffer): void {
    if (this.failure || chunk.length === 0) return; // a failed stream is dead: drop what follows
    const a = this.assembly;
    if (a) {
      const n = Math.min(chunk.length, a.bytes.length - a.filled);
      chunk.copy(a.bytes, a.filled, 0, n);
      a.filled += n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Next complete record, or undefined when more bytes are needed. Throws StreamError on a bad record (and stays failed). */
  next(): StreamRecord | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.parseNext();
    } catch (err) {
      if (err instanceof StreamError) {
        this.failure = err;
        this.chunks = [];
        this.buffered = 0;
        this.assembly = undefined;
      }
      throw err;
    }
  }

  get pending(): number {
    return this.buffered + (this.assembly?.filled ?? 0);
  }

  /** Call at end of stream: a partial record left over means the stream was cut. */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.pending === 0) return;
    const seq = this.returned + 1;
    const h = this.header;
    const type = h ? h.type : this.buffered > OFF_TYPE ? this.peek(OFF_TYPE + 1)[OFF_TYPE] : undefined;
    const fail: Fail = failer(recordLabel(seq, type));
    const expected = h ? `${RECORD_HEADER_SIZE + h.nameLength + h.payloadLength} record bytes` : `${RECORD_HEADER_SIZE} header bytes`;
    fail(`truncated: stream ended after ${this.pending} of ${expected}`);
  }

  private parseNext(): StreamRecord | undefined {
    const seq = this.returned + 1;
    if (!this.header) {
      if (this.buffered < RECORD_HEADER_SIZE) return undefined;
      this.header = readHeader(this.peek(RECORD_HEADER_SIZE), seq);
    }
    const h = this.header;
    const size = RECORD_HEADER_SIZE + h.nameLength + h.payloadLength;
    if (!this.assembly && this.buffered < size) this.startAssembly(h, size);
    let bytes: Buffer;
    if (this.assembly) {
      if (this.assembly.filled < size) return undefined;
      bytes = this.assembly.bytes;
      this.assembly = undefined;
    } else {
      if (this.buffered < size) return undefined;
      bytes = this.take(size);
    }
    const record = completeRecord(bytes, h, seq);
    this.header = undefined;
    this.returned = seq;
    return record;
  }

  /** A SNAPSHOT record still coming: copied into the memory the options give from here on (everything buffered is its). */
  private startAssembly(h: RecordHeader, size: number): void {
    if (h.type !== RecordType.Snapshot) return;
    const { snapshotMemory, compressedSnapshotScratch } = this.opts;
    const bytes = (h.flags & RecordFlag.lz4) !== 0 ? compressedSnapshotScratch?.(size) : snapshotMemory?.(RECORD_HEADER_SIZE + h.nameLength, size);
    if (!bytes) return;
    if (bytes.length !== size) throw new RangeError(`record memory of ${bytes.length} bytes given for a record of ${size}`);
    let filled = 0;
    for (const chunk of this.chunks) filled += chunk.copy(bytes, filled);
    this.chunks = [];
    this.buffered = 0;
    this.assembly = { bytes, filled };
  }

  /** The first n buffered bytes (n <= buffered) as one Buffer: a view, copying only when they span pushed chunks. */
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!.subarray(0, n);
  }

  /** Removes and returns the first n buffered bytes. */
  private take(n: number): Buffer {
    const out = this.peek(n);
    this.chunks[0] = this.chunks[0]!.subarray(n);
    if (this.chunks[0].length === 0) this.chunks.shift();
    this.buffered -= n;
    return out;
  }
}
