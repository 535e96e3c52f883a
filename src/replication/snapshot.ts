// A primary's snapshot of one database: a consistent image read under
// SQLite's own locks (so it stays whole while applications go on
// committing), named by the TXID whose checksum it has, and cut into
// SNAPSHOT records for the stream as its pages are read.
import { exportDatabase } from '../store/transfer.js';
import type { DB } from '../store/db.js';
import { memoryImagePages, type ImagePages } from '../store/image-read.js';
import { decodePageSize, isValidPageSize, lockPageNumber } from '../sqlite/dbheader.js';
import { CHECKSUM_FLAG, formatHex64 as hex, pageChecksumsXor } from '../txlog/checksum.js';
import { snapshotChunkRecordParts } from './records.js';

/** A snapshot: the TXID and checksum of its image, its size, and where its pages come from. */
export interface SnapshotImage {
  txid: number;
  checksum: bigint;
  pageSize: number;
  commitSize: number;
  timestamp: number;
  /** The pages, read as the records go out; close() when done (it lets go of SQLite's locks). */
  pages: ImagePages;
  /** How the image was read: straight from the backing files under SQLite's locks, or by SQLite through the mount. */
  via: 'files' | 'sqlite';
  /**
   * Set when the checksum is the database's position rather than computed
   * from the pages: the records check the pages against it as they go, and
   * call this when they differ (then throw).
   */
  unverified?: (actual: bigint) => void;
}

/** Pages per SNAPSHOT record: about 1 MiB of page data. */
const CHUNK_BYTES = 1024 * 1024;
const ATTEMPTS = 5;
/**
 * Chunks sent raw after one that lz4 shrank by less than an eighth: random
 * or already compressed data costs lz4 ~4 ms a MiB for nothing, and it tends
 * to come in long runs. Then one chunk is tried again; each further failure
 * doubles the run, up to INCOMPRESSIBLE_SKIP_MAX (a run of random blobs
 * costs a few tries a GiB, and compressible pages after it wait at most
 * 64 MiB), and a chunk that shrinks starts over.
 */
const INCOMPRESSIBLE_SKIP = 15;
const INCOMPRESSIBLE_SKIP_MAX = 63;
/** Bytes per read when an image is checksummed before it is sent. */
const CHECKSUM_READ_PAGES_BYTES = 16 * 1024 * 1024;

/** How long a snapshot waits for SQLite's locks before it lets SQLite read the image instead. */
const LOCK_WAIT_MS = 2000;

/**
 * A consistent image of the database and the TXID it is at: read straight
 * from the backing files under SQLite's locks (DB.openImage), or, when those
 * are not granted in time or the image matches no recent position (a hot
 * journal not yet rolled back), by SQLite itself through the mount. An image
 * the DB cannot name at once is read through for its checksum first; a
 * commit landing between the read and the lookup can leave that checksum
 * unknown for a moment: then it reads again. The caller closes image.pages.
 */
export async function takeSnapshot(db: DB, mountedPath: string): Promise<SnapshotImage> {
  let last = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const direct = attempt < ATTEMPTS - 1 ? await db.openImage(LOCK_WAIT_MS) : undefined;
    const pages = direct?.image ?? exportedImage(db.name, await exportDatabase(mountedPath));
    const via = direct ? 'files' : 'sqlite';
    const timestamp = Date.now();
    const place = { pageSize: pages.pageSize, commitSize: pages.commitSize, timestamp };
    try {
      if (pages.commitSize < 1) throw new Error(`snapshot of ${db.name}: the database is empty`);
      const position = direct?.position;
      if (position) {
        return { ...place, ...position, pages, via, unverified: (actual) => db.streamedImageDiffers(position.checksum, actual) };
      }
      const checksum = await checksumOf(pages);
      const txid = db.txidOfChecksum(checksum);
      if (txid !== undefined) return { ...place, txid, checksum, pages, via };
      last = checksum.toString(16);
    } catch (err) {
      await pages.close();
      throw err;
    }
    await pages.close();
  }
  throw new Error(`snapshot of ${db.name}: the image's checksum ${last} matches no recent transaction (${ATTEMPTS} reads)`);
}

function exportedImage(name: string, bytes: Buffer): ImagePages {
  if (bytes.length < 100) throw new Error(`snapshot of ${name}: the database is empty`);
  const pageSize = decodePageSize(bytes.readUInt16BE(16));
  if (!isValidPageSize(pageSize) || bytes.length % pageSize !== 0) throw new Error(`snapshot of ${name}: ${bytes.length} bytes are not whole pages of ${pageSize}`);
  return memoryImagePages(bytes, pageSize);
}

/** The database checksum of an image, read in slices (one read ahead of the checksum). */
async function checksumOf(pages: ImagePages): Promise<bigint> {
  const perRead = Math.max(1, Math.floor(CHECKSUM_READ_PAGES_BYTES / pages.pageSize));
  const lockPage = lockPageNumber(pages.pageSize);
  const ranges: PageRange[] = [];
  for (let first = 1; first <= pages.commitSize; first += perRead) ranges.push({ first, count: perRead });
  let xor = 0n;
  let i = 0;
  for await (const bytes of readAhead(pages, ranges, Math.min(perRead, pages.commitSize) * pages.pageSize)) {
    xor ^= pageChecksumsXor(bytes, pages.pageSize, ranges[i++]!.first, lockPage);
  }
  return xor | CHECKSUM_FLAG;
}

interface PageRange {
  first: number;
  count: number;
}

/**
 * The ranges' pages, each read while the one before is used, into two
 * buffers by turns (fresh memory for every read costs page faults and GC):
 * a yielded buffer holds its pages until the next one is asked for.
 */
async function* readAhead(pages: ImagePages, ranges: PageRange[], bufferBytes: number): AsyncGenerator<Buffer> {
  const buffers = [Buffer.allocUnsafeSlow(bufferBytes), Buffer.allocUnsafeSlow(bufferBytes)];
  const read = (i: number) => {
    const reading = pages.read(ranges[i]!.first, ranges[i]!.count, buffers[i % 2]);
    reading.catch(() => {}); // observed in its turn; a consumer that stops early leaves it unobserved
    return reading;
  };
  let next = ranges.length > 0 ? read(0) : undefined;
  for (let i = 0; next; i++) {
    const bytes = await next;
    next = i + 1 < ranges.length ? read(i + 1) : undefined;
    yield bytes;
  }
}

/** The pages of each SNAPSHOT record: runs that never contain the lock page, the last one flagged. */
function* chunkRanges(pageSize: number, commitSize: number): Generator<{ first: number; end: number; last: boolean }> {
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / pageSize));
  const lockPage = lockPageNumber(pageSize);
  for (let first = 1; first <= commitSize; ) {
    if (first === lockPage) first++;
    if (first > commitSize) break;
    let end = Math.min(commitSize, first + perChunk - 1); // inclusive
    if (first < lockPage && end >= lockPage) end = lockPage - 1;
    yield { first, end, last: end === commitSize || (end === lockPage - 1 && lockPage === commitSize) };
    first = end + 1;
  }
}

/**
 * A snapshot as SNAPSHOT records, its pages read one chunk ahead of the
 * record going out. An image named without reading it (unverified) is
 * checked as it goes: after the last record, a checksum that differs throws.
 */
export async function* streamSnapshotRecords(name: string, image: Omit<SnapshotImage, 'via'>, compress: boolean): AsyncGenerator<Buffer> {
  for await (const [prefix, payload] of snapshotRecordParts(name, image, compress)) yield Buffer.concat([prefix, payload], prefix.length + payload.length);
}

/**
 * streamSnapshotRecords without copying the pages: each record as its
 * header and its payload, which for a chunk sent raw is the read buffer
 * itself. That buffer is read into again once the next record is asked for,
 * so a consumer must be done with a record (the socket has taken it) by then.
 */
export async function* snapshotRecordParts(name: string, image: Omit<SnapshotImage, 'via'>, compress: boolean): AsyncGenerator<[Buffer, Buffer]> {
  const { pageSize, pages } = image;
  const at = { maxTxid: image.txid, postApplyChecksum: image.checksum, pageSize, commitSize: image.commitSize };
  const ranges = [...chunkRanges(pageSize, image.commitSize)];
  const reads = readAhead(pages, ranges.map(({ first, end }) => ({ first, count: end - first + 1 })), Math.min(CHUNK_BYTES, image.commitSize * pageSize) + pageSize);
  let xor = 0n;
  let skip = 0;
  let run = INCOMPRESSIBLE_SKIP;
  let i = 0;
  for await (const bytes of reads) {
    const { first, last } = ranges[i++]!;
    if (image.unverified) xor ^= pageChecksumsXor(bytes, pageSize, first, 0); // a chunk never holds the lock page
    const tried = compress && skip === 0;
    const parts = snapshotChunkRecordParts(name, at, first, bytes, last, tried);
    const size = parts[0].length + parts[1].length;
    if (skip > 0) skip--;
    else if (tried && size > bytes.length - bytes.length / 8) [skip, run] = [run, Math.min(2 * run + 1, INCOMPRESSIBLE_SKIP_MAX)];
    else if (tried) run = INCOMPRESSIBLE_SKIP;
    yield parts;
  }
  const actual = xor | CHECKSUM_FLAG;
  if (image.unverified && actual !== image.checksum) {
    image.unverified(actual);
    throw new Error(`snapshot of ${name}: the pages sent have checksum ${hex(actual)}, not ${hex(image.checksum)} of TXID ${image.txid}`);
  }
}
