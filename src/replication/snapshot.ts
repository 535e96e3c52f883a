// A primary's snapshot of one database: a consistent image read by SQLite
// itself through the mount (a read transaction, so SQLite's own locks keep
// it whole while applications go on committing), named by the TXID whose
// checksum it has, and cut into SNAPSHOT records for the stream.
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
}

/** Pages per SNAPSHOT record: about 1 MiB of page data. */
const CHUNK_BYTES = 1024 * 1024;
const ATTEMPTS = 5;

/**
 * Reads the database through the mount and finds the TXID it is at. A
 * commit landing between SQLite's read and the lookup can leave the image's
 * checksum unknown for a moment: then it reads again.
 */
export async function takeSnapshot(db: DB, mountedPath: string): Promise<SnapshotImage> {
  let last = '';
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const bytes = await exportDatabase(mountedPath);
    if (bytes.length < 100) throw new Error(`snapshot of ${db.name}: the database is empty`);
    const pageSize = decodePageSize(bytes.readUInt16BE(16));
    if (!isValidPageSize(pageSize) || bytes.length % pageSize !== 0) throw new Error(`snapshot of ${db.name}: ${bytes.length} bytes are not whole pages of ${pageSize}`);
    const checksum = imageChecksum(bytes, pageSize);
    const txid = db.txidOfChecksum(checksum);
    if (txid !== undefined) return { bytes, txid, checksum, pageSize, commitSize: bytes.length / pageSize, timestamp: Date.now() };
    last = checksum.toString(16);
  }
  throw new Error(`snapshot of ${db.name}: the image's checksum ${last} matches no recent transaction (${ATTEMPTS} reads)`);
}

/** The image as SNAPSHOT records: runs of pages that never contain the lock page, the last one flagged. */
export function* snapshotRecords(name: string, image: SnapshotImage, compress: boolean): Generator<Buffer> {
  const { pageSize, commitSize } = image;
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / pageSize));
  const lockPage = lockPageNumber(pageSize);
  const at = { maxTxid: image.txid, postApplyChecksum: image.checksum, pageSize, commitSize };
  let first = 1;
  while (first <= commitSize) {
    if (first === lockPage) first++;
    if (first > commitSize) break;
    let end = Math.min(commitSize, first + perChunk - 1); // inclusive
    if (first < lockPage && end >= lockPage) end = lockPage - 1;
    const last = end === commitSize || (end === lockPage - 1 && lockPage === commitSize);
    const pages = image.bytes.subarray((first - 1) * pageSize, end * pageSize);
    yield snapshotChunkRecord(name, at, first, pages, last, compress);
    first = end + 1;
  }
}
