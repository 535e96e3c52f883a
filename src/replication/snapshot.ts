// A primary's snapshot of one database: a consistent image read under
// SQLite's own locks (so it stays whole while applications go on
// committing), named by the TXID whose checksum it has, and cut into
// SNAPSHOT records for the stream.
import { exportDatabase } from '../store/transfer.js';
import type { DB } from '../store/db.js';
import { decodePageSize, isValidPageSize, lockPageNumber } from '../sqlite/dbheader.js';
import { imageChecksum } from '../txlog/image.js';
import { snapshotChunkRecord } from './records.js';

export interface SnapshotImage {
  bytes: Buffer;
  txid: number;
  checksum: bigint;
  pageSize: number;
  commitSize: number;
  timestamp: number;
  /** How the image was read: straight from the backing files under SQLite's locks, or by SQLite through the mount. */
  via: 'files' | 'sqlite';
}

/** Pages per SNAPSHOT record: about 1 MiB of page data. */
const CHUNK_BYTES = 1024 * 1024;
const ATTEMPTS = 5;
/**
 * Chunks sent raw after one that lz4 shrank by less than an eighth: random
 * or already compressed data costs lz4 ~4 ms a MiB for nothing, and it tends
 * to come in long runs. Then one chunk is tried again.
 */
const INCOMPRESSIBLE_SKIP = 15;

/** How long a snapshot waits for SQLite's locks before it lets SQLite read the image instead. */
const LOCK_WAIT_MS = 2000;

/**
 * A consistent image of the database and the TXID it is at: read straight
 * from the backing files under SQLite's locks (DB.readImage), or, when those
 * are not granted in time or the image matches no recent position (a hot
 * journal not yet rolled back), by SQLite itself through the mount. A commit
 * landing between the read and the lookup can leave the image's checksum
 * unknown for a moment: then it reads again.
 */
export async function takeSnapshot(db: DB, mountedPath: string): Promise<SnapshotImage> {
  let last = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const direct = attempt < ATTEMPTS - 1 ? await db.readImage(LOCK_WAIT_MS) : undefined;
    const bytes = direct ?? (await exportDatabase(mountedPath));
    if (bytes.length < 100) throw new Error(`snapshot of ${db.name}: the database is empty`);
    const pageSize = decodePageSize(bytes.readUInt16BE(16));
    if (!isValidPageSize(pageSize) || bytes.length % pageSize !== 0) throw new Error(`snapshot of ${db.name}: ${bytes.length} bytes are not whole pages of ${pageSize}`);
    const checksum = imageChecksum(bytes, pageSize);
    const txid = db.txidOfChecksum(checksum);
    if (txid !== undefined) return { bytes, txid, checksum, pageSize, commitSize: bytes.length / pageSize, timestamp: Date.now(), via: direct ? 'files' : 'sqlite' };
    last = checksum.toString(16);
  }
  throw new Error(`snapshot of ${db.name}: the image's checksum ${last} matches no recent transaction (${ATTEMPTS} reads)`);
}

/** The image as SNAPSHOT records: runs of pages that never contain the lock page, the last one flagged. */
export function* snapshotRecords(name: string, image: Omit<SnapshotImage, 'via'>, compress: boolean): Generator<Buffer> {
  const { pageSize, commitSize } = image;
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / pageSize));
  const lockPage = lockPageNumber(pageSize);
  const at = { maxTxid: image.txid, postApplyChecksum: image.checksum, pageSize, commitSize };
  let first = 1;
  let skip = 0;
  while (first <= commitSize) {
    if (first === lockPage) first++;
    if (first > commitSize) break;
    let end = Math.min(commitSize, first + perChunk - 1); // inclusive
    if (first < lockPage && end >= lockPage) end = lockPage - 1;
    const last = end === commitSize || (end === lockPage - 1 && lockPage === commitSize);
    const pages = image.bytes.subarray((first - 1) * pageSize, end * pageSize);
    const record = snapshotChunkRecord(name, at, first, pages, last, compress && skip === 0);
    if (skip > 0) skip--;
    else if (compress && record.length > pages.length - pages.length / 8) skip = INCOMPRESSIBLE_SKIP;
    yield record;
    first = end + 1;
  }
}
