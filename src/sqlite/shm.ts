// The WAL-index ("-shm" file) header, and the lock bytes SQLite uses on the
// -shm and database files.
//
// The first 136 bytes of the -shm are (https://sqlite.org/walformat.html):
//   0   WalIndexHdr, first copy  (48 bytes)
//   48  WalIndexHdr, second copy (48 bytes)
//   96  WalCkptInfo: nBackfill u32, aReadMark[5] u32, aLock[8] u8,
//       nBackfillAttempted u32, notUsed0 u32            (40 bytes)
// Unlike the WAL, the -shm is never portable: its integers are in the HOST's
// byte order, and its checksum reads host-order words. One exception: aSalt
// holds the WAL header's salt bytes copied verbatim, so it is big-endian.
//
// A writer updates the second copy, then the first; a reader trusts the header
// only if both copies are byte-identical, isInit is set and aCksum matches.
// A reader whose header differs from the one it last saw drops its page cache,
// which is what resetWalIndexHeader relies on.

import { endianness } from 'node:os';
import { walChecksum, type WalChecksum } from './wal.js';

export { PENDING_BYTE, RESERVED_BYTE, SHARED_FIRST, SHARED_SIZE } from './dbheader.js';

export const WAL_INDEX_HEADER_SIZE = 48;
/** Bytes of the header copies covered by aCksum: everything before aCksum. */
export const WAL_INDEX_CHECKSUMMED_SIZE = 40;
export const CHECKPOINT_INFO_OFFSET = 96;
/** Both header copies plus the checkpoint info. */
export const SHM_HEADER_SIZE = 136;
/** WalIndexHdr.iVersion written by every SQLite since 3.7.0. */
export const WAL_INDEX_VERSION = 3007000;
/** Number of read marks (and read locks). */
export const WAL_NREADER = 5;
/** aReadMark value meaning "slot free". */
export const READMARK_NOT_USED = 0xffffffff;

// fcntl lock byte offsets in the -shm file (unix VFS: lock index + 120).
export const WAL_WRITE_LOCK = 120;
export const WAL_CKPT_LOCK = 121;
export const WAL_RECOVER_LOCK = 122;
/** Read lock n (0..4) guards aReadMark[n]. */
export function WAL_READ_LOCK(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n >= WAL_NREADER) throw new RangeError(`read lock index ${n} out of 0..4`);
  return 123 + n;
}
/** "Dead man switch": shared by every connection; exclusive means "first opener, may reset the -shm". */
export const WAL_DMS_LOCK = 128;

const HOST_BIG_ENDIAN = endianness() === 'BE';

function readU32(buf: Buffer, offset: number): number {
  return HOST_BIG_ENDIAN ? buf.readUInt32BE(offset) : buf.readUInt32LE(offset);
}
function writeU32(buf: Buffer, value: number, offset: number): void {
  if (HOST_BIG_ENDIAN) buf.writeUInt32BE(value >>> 0, offset);
  else buf.writeUInt32LE(value >>> 0, offset);
}
function readU16(buf: Buffer, offset: number): number {
  return HOST_BIG_ENDIAN ? buf.readUInt16BE(offset) : buf.readUInt16LE(offset);
}
function writeU16(buf: Buffer, value: number, offset: number): void {
  if (HOST_BIG_ENDIAN) buf.writeUInt16BE(value, offset);
  else buf.writeUInt16LE(value, offset);
}

export interface WalIndexHeader {
  version: number;
  /** Bumped on every change; part of what readers compare to notice one. */
  change: number;
  isInit: boolean;
  /** Copy of the WAL magic's low bit: WAL checksums use big-endian words. */
  bigEndianChecksum: boolean;
  /** Page size in bytes (the stored value 1 decoded as 65536). */
  pageSize: number;
  /** Number of valid committed frames in the WAL (SQLite's 1-based last frame). */
  mxFrame: number;
  /** Database size in pages as of mxFrame. */
  nPage: number;
  /** WAL checksum after frame mxFrame (the seed for the next frame). */
  frameChecksum: WalChecksum;
  /** Salts as numbers, equal to the WAL header's salt1/salt2. */
  salt1: number;
  salt2: number;
  /** Stored checksum of the first 40 bytes. */
  checksum: WalChecksum;
  /** Whether `checksum` matches the recomputed one. */
  checksumValid: boolean;
}

export interface CheckpointInfo {
  /** Frames already copied into the database file. */
  nBackfill: number;
  /** aReadMark[0..4]; READMARK_NOT_USED marks a free slot. */
  readMarks: number[];
  nBackfillAttempted: number;
}

export interface ShmHeader {
  first: WalIndexHeader;
  second: WalIndexHeader;
  /** The two 48-byte copies are byte-identical. */
  copiesIdentical: boolean;
  /** SQLite would trust this header without running recovery. */
  valid: boolean;
  checkpoint: CheckpointInfo;
}

/** SQLite's checksum of a header copy: host-order words over its first 40 bytes. */
export function walIndexHeaderChecksum(copy: Buffer): WalChecksum {
  return walChecksum(copy.subarray(0, WAL_INDEX_CHECKSUMMED_SIZE), HOST_BIG_ENDIAN);
}

/** Decode one 48-byte WalIndexHdr copy starting at `offset`. */
export function parseWalIndexHeader(buf: Buffer, offset = 0): WalIndexHeader {
  if (buf.length < offset + WAL_INDEX_HEADER_SIZE) {
    throw new RangeError(`WAL-index header needs ${WAL_INDEX_HEADER_SIZE} bytes at offset ${offset}`);
  }
  const copy = buf.subarray(offset, offset + WAL_INDEX_HEADER_SIZE);
  const rawPageSize = readU16(copy, 14);
  const checksum: WalChecksum = [readU32(copy, 40), readU32(copy, 44)];
  const computed = walIndexHeaderChecksum(copy);
  return {
    version: readU32(copy, 0),
    change: readU32(copy, 8),
    isInit: copy[12] !== 0,
    bigEndianChecksum: copy[13] !== 0,
    // SQLite stores (size & 0xff00) | (size >> 16), i.e. 1 for 65536.
    pageSize: rawPageSize === 1 ? 65536 : rawPageSize,
    mxFrame: readU32(copy, 16),
    nPage: readU32(copy, 20),
    frameChecksum: [readU32(copy, 24), readU32(copy, 28)],
    salt1: copy.readUInt32BE(32),
    salt2: copy.readUInt32BE(36),
    checksum,
    checksumValid: computed[0] === checksum[0] && computed[1] === checksum[1],
  };
}

/** Decode the 136-byte -shm header (both copies and the checkpoint info). */
export function parseShmHeader(buf: Buffer): ShmHeader {
  if (buf.length < SHM_HEADER_SIZE) {
    throw new RangeError(`-shm header needs ${SHM_HEADER_SIZE} bytes, got ${buf.length}`);
  }
  const first = parseWalIndexHeader(buf, 0);
  const second = parseWalIndexHeader(buf, WAL_INDEX_HEADER_SIZE);
  const copiesIdentical = buf
    .subarray(0, WAL_INDEX_HEADER_SIZE)
    .equals(buf.subarray(WAL_INDEX_HEADER_SIZE, 2 * WAL_INDEX_HEADER_SIZE));
  const readMarks: number[] = [];
  for (let i = 0; i < WAL_NREADER; i++) readMarks.push(readU32(buf, CHECKPOINT_INFO_OFFSET + 4 + 4 * i));
  return {
    first,
    second,
    copiesIdentical,
    valid: copiesIdentical && first.isInit && first.checksumValid,
    checkpoint: {
      nBackfill: readU32(buf, CHECKPOINT_INFO_OFFSET),
      readMarks,
      nBackfillAttempted: readU32(buf, 128),
    },
  };
}

/**
 * Build a new 136-byte -shm prefix that makes every SQLite connection forget
 * the WAL and re-read the database file, for use after the database file was
 * rewritten underneath SQLite (a replica applying a transaction).
 *
 * The caller must hold the locks that keep SQLite out (WAL_WRITE_LOCK,
 * WAL_CKPT_LOCK and the read locks) while the database file changes and this
 * prefix is written, and should truncate the WAL to 0 bytes: the salts are
 * kept, so a WAL left in place could in theory have old frames re-validated
 * behind a new, byte-identical first frame.
 *
 * iChange is incremented so that a connection's cached header no longer
 * matches (it then drops its page cache); mxFrame = 0 and nBackfill = 0 mean
 * "everything is in the database file", and with only aReadMark[0] in use a
 * reader takes read lock 0, which reads the database file alone.
 */
export function resetWalIndexHeader(current: Buffer, nPage: number, pageSize: number): Buffer {
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new RangeError(`invalid page size ${pageSize}`);
  }
  // Start from the current bytes so the lock bytes and unused fields carry
  // over; an -shm that is new or shorter than the header reads as zeros.
  const out = Buffer.alloc(SHM_HEADER_SIZE);
  current.copy(out, 0, 0, Math.min(current.length, SHM_HEADER_SIZE));

  // Take salts and frame checksum from a copy SQLite itself would trust.
  let source: Buffer | undefined;
  for (const offset of [0, WAL_INDEX_HEADER_SIZE]) {
    if (current.length >= offset + WAL_INDEX_HEADER_SIZE && parseWalIndexHeader(current, offset).checksumValid) {
      source = current.subarray(offset, offset + WAL_INDEX_HEADER_SIZE);
      break;
    }
  }

  const copy = Buffer.alloc(WAL_INDEX_HEADER_SIZE);
  if (source !== undefined) source.copy(copy);
  writeU32(copy, WAL_INDEX_VERSION, 0);
  writeU32(copy, 0, 4); // unused padding
  writeU32(copy, (source !== undefined ? readU32(source, 8) + 1 : 1) >>> 0, 8); // iChange
  copy[12] = 1; // isInit
  // copy[13] (bigEndCksum), bytes 24..39 (aFrameCksum, aSalt) stay as in source.
  writeU16(copy, (pageSize & 0xff00) | (pageSize >>> 16), 14);
  writeU32(copy, 0, 16); // mxFrame
  writeU32(copy, nPage, 20);
  const [c0, c1] = walIndexHeaderChecksum(copy);
  writeU32(copy, c0, 40);
  writeU32(copy, c1, 44);

  copy.copy(out, 0);
  copy.copy(out, WAL_INDEX_HEADER_SIZE);

  writeU32(out, 0, CHECKPOINT_INFO_OFFSET); // nBackfill
  writeU32(out, 0, CHECKPOINT_INFO_OFFSET + 4); // aReadMark[0]
  for (let i = 1; i < WAL_NREADER; i++) writeU32(out, READMARK_NOT_USED, CHECKPOINT_INFO_OFFSET + 4 + 4 * i);
  // Bytes 120..127 (aLock) are lock targets only; SQLite never stores data there.
  writeU32(out, 0, 128); // nBackfillAttempted
  return out;
}
