// The transaction log's index in memory: where each transaction file sits,
// kept in columns of typed arrays instead of one object per transaction.
// A primary committing thousands of transactions a second keeps millions of
// entries for `data.retention`: as objects they took ~70 bytes of heap
// each, and every major garbage collection traced them all on the thread
// that records commits; in columns they take 48 bytes the collector never
// looks at. Entries are only ever added at the end, cut back from the end
// (a failed write, a damaged tail) or dropped a whole segment at a time
// from the front (retention).

/** Where one transaction file sits in the log. */
export interface LogEntry {
  segment: string;
  offset: number;
  length: number;
  minTxid: number;
  maxTxid: number;
  timestamp: number;
  /** A stream record or backup object holds one page size: a change starts a new one (contiguousFrom). */
  pageSize: number;
}

/** One segment file's share of the index: its entries lie back to back. */
export interface SegmentSummary {
  name: string;
  count: number;
  /** The newest timestamp among its entries. */
  maxTimestamp: number;
  /** The last TXID it holds. */
  maxTxid: number;
}

const INITIAL_CAPACITY = 1024;

export class LogIndex {
  private capacity = INITIAL_CAPACITY;
  private segmentId = new Uint32Array(INITIAL_CAPACITY);
  private pageSize = new Uint32Array(INITIAL_CAPACITY);
  private offset = new Float64Array(INITIAL_CAPACITY);
  private size = new Float64Array(INITIAL_CAPACITY);
  private minTxid = new Float64Array(INITIAL_CAPACITY);
  private maxTxid = new Float64Array(INITIAL_CAPACITY);
  private timestamp = new Float64Array(INITIAL_CAPACITY);
  /** Slots head..tail-1 hold the entries. */
  private head = 0;
  private tail = 0;
  /** Oldest first; segments[k] has id firstSegmentId + k. */
  private segments: SegmentSummary[] = [];
  private firstSegmentId = 0;

  get length(): number {
    return this.tail - this.head;
  }

  /** The i-th entry (0 is the oldest), built on demand. */
  at(i: number): LogEntry {
    if (i < 0 || i >= this.length) throw new RangeError(`log index ${i} out of range 0..${this.length - 1}`);
    const s = this.head + i;
    return {
      segment: this.segments[this.segmentId[s]! - this.firstSegmentId]!.name,
      offset: this.offset[s]!,
      length: this.size[s]!,
      minTxid: this.minTxid[s]!,
      maxTxid: this.maxTxid[s]!,
      timestamp: this.timestamp[s]!,
      pageSize: this.pageSize[s]!,
    };
  }

  get last(): LogEntry | undefined {
    return this.length ? this.at(this.length - 1) : undefined;
  }

  /** The last TXID of the newest entry, without building it (every append checks it). */
  get lastTxid(): number | undefined {
    return this.length ? this.maxTxid[this.tail - 1] : undefined;
  }

  /** The segments the entries lie in, oldest first. */
  get segmentSummaries(): readonly SegmentSummary[] {
    return this.segments;
  }

  push(e: LogEntry): void {
    if (this.tail === this.capacity) this.makeRoom();
    let seg = this.segments[this.segments.length - 1];
    if (!seg || seg.name !== e.segment) {
      seg = { name: e.segment, count: 0, maxTimestamp: e.timestamp, maxTxid: e.maxTxid };
      this.segments.push(seg);
    }
    seg.count++;
    seg.maxTimestamp = Math.max(seg.maxTimestamp, e.timestamp);
    seg.maxTxid = e.maxTxid;
    const s = this.tail++;
    this.segmentId[s] = this.firstSegmentId + this.segments.length - 1;
    this.offset[s] = e.offset;
    this.size[s] = e.length;
    this.minTxid[s] = e.minTxid;
    this.maxTxid[s] = e.maxTxid;
    this.timestamp[s] = e.timestamp;
    this.pageSize[s] = e.pageSize;
  }

  /** Keeps the first `length` entries. A cut segment's newest timestamp stays as it was (retention keeps it longer, never shorter). */
  truncate(length: number): void {
    while (this.length > length) {
      const seg = this.segments[this.segments.length - 1]!;
      const cut = Math.min(seg.count, this.length - length);
      seg.count -= cut;
      this.tail -= cut;
      if (seg.count === 0) this.segments.pop();
      else seg.maxTxid = this.maxTxid[this.tail - 1]!;
    }
  }

  clear(): void {
    this.head = this.tail = 0;
    this.firstSegmentId += this.segments.length;
    this.segments = [];
  }

  /** Drops the oldest segment's entries. */
  dropOldestSegment(): void {
    const seg = this.segments.shift();
    if (!seg) return;
    this.firstSegmentId++;
    this.head += seg.count;
  }

  /** Index of the entry whose first TXID is `txid`, or -1 (binary search: entries ascend). */
  indexOf(txid: number): number {
    let lo = this.head;
    let hi = this.tail - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.minTxid[mid]!;
      if (t === txid) return mid - this.head;
      if (t < txid) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Moves the entries to the front, or doubles the columns when they are more than half full. */
  private makeRoom(): void {
    const n = this.length;
    const capacity = n * 2 > this.capacity ? this.capacity * 2 : this.capacity;
    const move = <T extends Uint32Array | Float64Array>(a: T, make: (size: number) => T): T => {
      if (capacity === this.capacity) {
        a.copyWithin(0, this.head, this.tail);
        return a;
      }
      const to = make(capacity);
      to.set(a.subarray(this.head, this.tail), 0);
      return to;
    };
    this.segmentId = move(this.segmentId, (c) => new Uint32Array(c));
    this.pageSize = move(this.pageSize, (c) => new Uint32Array(c));
    this.offset = move(this.offset, (c) => new Float64Array(c));
    this.size = move(this.size, (c) => new Float64Array(c));
    this.minTxid = move(this.minTxid, (c) => new Float64Array(c));
    this.maxTxid = move(this.maxTxid, (c) => new Float64Array(c));
    this.timestamp = move(this.timestamp, (c) => new Float64Array(c));
    this.capacity = capacity;
    this.head = 0;
    this.tail = n;
  }
}
