// The database checksum of a whole database image held in memory (a
// snapshot): the XOR of its page checksums, the lock page left out, with
// the flag bit set (docs/format.md).
import { lockPageNumber } from '../sqlite/dbheader.js';
import { CHECKSUM_FLAG, pageChecksumsXor } from './checksum.js';

/** Pages per native call: keeps each call (and the event loop's pause) short on a large image. */
const SLICE_PAGES = 16384;

export function imageChecksum(bytes: Buffer, pageSize: number): bigint {
  const pages = bytes.length / pageSize;
  const lockPage = lockPageNumber(pageSize);
  let sum = 0n;
  for (let first = 1; first <= pages; first += SLICE_PAGES) {
    const end = Math.min(pages, first + SLICE_PAGES - 1);
    sum ^= pageChecksumsXor(bytes.subarray((first - 1) * pageSize, end * pageSize), pageSize, first, lockPage);
  }
  return sum | CHECKSUM_FLAG;
}
