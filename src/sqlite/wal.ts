// SQLite's write-ahead log (the "-wal" file): header, frames and checksums.
//
// Layout (https://sqlite.org/fileformat.html §4): a 32-byte header, then
// frames of a 24-byte frame header plus one page. Every integer in the file is
// big-endian. The checksum is cumulative: each frame's checksum covers its own
// first 8 header bytes and page, seeded with the previous frame's checksum
// (the first frame is seeded with the header's). A frame is valid only if its
// salts equal the header's and its checksum continues the chain; SQLite stops
// at the first frame that fails, and only frames up to the last valid commit
// frame count. (Sector padding after a commit repeats the commit frame, each
// copy chained and itself a commit frame: it scans as 1-frame transactions.)

import { isValidPageSize } from './dbheader.js';

export const WAL_HEADER_SIZE = 32;
export const WAL_FRAME_HEADER_SIZE = 24;
/** Magic when checksums read the data as little-endian 32-bit words. */
export const WAL_MAGIC_LE = 0x377f0682;
/** Magic when checksums read the data as big-endian 32-bit words. */
export const WAL_MAGIC_BE = 0x377f0683;
/** The only WAL format version SQLite has ever written. */
export const WAL_FORMAT_VERSION = 3007000;

/** The running [s0, s1] pair of SQLite's WAL checksum. */
export type WalChecksum = readonly [number, number];

export interface WalHeader {
  magic: number;
  bigEndianChecksum: boolean; // the magic's low bit: checksums read big-endian words
  version: number;
  pageSize: number; // a plain u32 here, so 65536 is stored as 65536
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  checksum: WalChecksum; // over the first 24 header bytes; the seed for frame 0
}

export interface WalFrameHeader {
  pgno: number; // 1-based database page number
  commitSize: number; // database size in pages after commit on a commit frame, else 0
  salt1: number;
  salt2: number;
  checksum: WalChecksum; // cumulative, up to and including this frame
}

export interface WalFrame extends WalFrameHeader {
  index: number; // 0-based (SQLite's own frame numbers are this + 1)
  data: Buffer; // the page: a view into the scanned buffer, not a copy
}

export interface WalTransaction {
  firstFrame: number; // index of its first frame
  frames: WalFrame[]; // in WAL order, the commit frame last; a page may repeat
  commitSize: number; // database size in pages after this transaction
  checksum: WalChecksum; // after the commit frame: the seed for what follows
}

/**
 * end: no bytes left on a frame boundary; partial-frame: a trailing piece of a
 * frame; salt-mismatch: a frame left from before a checkpoint restart;
 * checksum-mismatch: a torn, stale or corrupt frame; zero-pgno: never real.
 */
export type WalScanStop = 'end' | 'partial-frame' | 'salt-mismatch' | 'checksum-mismatch' | 'zero-pgno';

export interface WalScan {
  header: WalHeader;
  transactions: WalTransaction[]; // committed ones, in order
  committedFrameEnd: number; // one past the last commit frame (SQLite recovery's mxFrame)
  validFrameEnd: number; // one past the last valid frame, counting an uncommitted tail
  checksum: WalChecksum; // at committedFrameEnd: the seed to resume from there
  stop: WalScanStop; // why the scan stopped at validFrameEnd
}

/**
 * SQLite's WAL checksum over `data` (length a multiple of 8), continuing from
 * `seed`. The data is read as 32-bit words, big- or little-endian as the WAL
 * magic says, and folded two words at a time into the pair:
 *   s0 += w[i] + s1;  s1 += w[i+1] + s0;   (all mod 2^32)
 */
export function walChecksum(data: Buffer, bigEndian: boolean, seed: WalChecksum = [0, 0]): WalChecksum {
  if (data.length % 8 !== 0) throw new RangeError(`WAL checksum input must be a multiple of 8 bytes, got ${data.length}`);
  let s0 = seed[0];
  let s1 = seed[1];
  // This runs over every committed page: read words through a typed-array
  // view where the byte order and alignment allow, byte by byte otherwise.
  if (bigEndian === HOST_BIG_ENDIAN && data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2);
    for (let i = 0; i < words.length; i += 2) {
      s0 = (s0 + words[i]! + s1) >>> 0;
      s1 = (s1 + words[i + 1]! + s0) >>> 0;
    }
  } else if (bigEndian) {
    for (let i = 0; i < data.length; i += 8) {
      s0 = (s0 + ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) + s1) >>> 0;
      s1 = (s1 + ((data[i + 4]! << 24) | (data[i + 5]! << 16) | (data[i + 6]! << 8) | data[i + 7]!) + s0) >>> 0;
    }
  } else {
    for (let i = 0; i < data.length; i += 8) {
      s0 = (s0 + (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) + s1) >>> 0;
      s1 = (s1 + (data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24)) + s0) >>> 0;
    }
  }
  return [s0, s1];
}

const HOST_BIG_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 0;

/** Byte offset of frame `frameIndex` (0-based; frame 0 starts right after the 32-byte header). */
export function walFrameOffset(frameIndex: number, pageSize: number): number {
  return WAL_HEADER_SIZE + frameIndex * (WAL_FRAME_HEADER_SIZE + pageSize);
}

/** Byte offset just past a transaction's commit frame. */
export function walTransactionEnd(tx: { frames: readonly { index: number }[] }, pageSize: number): number {
  return walFrameOffset(tx.frames[tx.frames.length - 1]!.index + 1, pageSize);
}

/** Decode the 32-byte WAL header without judging it; see walHeaderProblem. */
export function parseWalHeader(buf: Buffer): WalHeader {
  if (buf.length < WAL_HEADER_SIZE) throw new RangeError(`WAL header needs 32 bytes, got ${buf.length}`);
  const magic = buf.readUInt32BE(0);
  return {
    magic,
    bigEndianChecksum: (magic & 1) === 1,
    version: buf.readUInt32BE(4),
    pageSize: buf.readUInt32BE(8),
    checkpointSeq: buf.readUInt32BE(12),
    salt1: buf.readUInt32BE(16),
    salt2: buf.readUInt32BE(20),
    checksum: [buf.readUInt32BE(24), buf.readUInt32BE(28)],
  };
}

/**
 * Why SQLite would ignore this WAL header (and so the whole WAL), or
 * undefined if the header is valid: short buffer, bad magic, bad page size,
 * checksum mismatch, or unknown version.
 */
export function walHeaderProblem(buf: Buffer): string | undefined {
  if (buf.length < WAL_HEADER_SIZE) return `short WAL header (${buf.length} bytes)`;
  const header = parseWalHeader(buf);
  if ((header.magic & 0xfffffffe) !== WAL_MAGIC_LE) return `bad WAL magic 0x${header.magic.toString(16)}`;
  if (!isValidPageSize(header.pageSize)) return `bad WAL page size ${header.pageSize}`;
  const computed = walChecksum(buf.subarray(0, 24), header.bigEndianChecksum);
  if (computed[0] !== header.checksum[0] || computed[1] !== header.checksum[1]) return 'WAL header checksum mismatch';
  if (header.version !== WAL_FORMAT_VERSION) return `unknown WAL version ${header.version}`;
  return undefined;
}

/**
 * Build a 32-byte WAL header with its checksum. bigEndianChecksum defaults to
 * false: the little-endian magic SQLite writes on x86/ARM hosts.
 */
export function encodeWalHeader(fields: {
  pageSize: number; salt1: number; salt2: number; checkpointSeq?: number; bigEndianChecksum?: boolean;
}): Buffer {
  const buf = Buffer.alloc(WAL_HEADER_SIZE);
  const bigEndian = fields.bigEndianChecksum ?? false;
  buf.writeUInt32BE(bigEndian ? WAL_MAGIC_BE : WAL_MAGIC_LE, 0);
  buf.writeUInt32BE(WAL_FORMAT_VERSION, 4);
  buf.writeUInt32BE(fields.pageSize, 8);
  buf.writeUInt32BE(fields.checkpointSeq ?? 0, 12);
  buf.writeUInt32BE(fields.salt1 >>> 0, 16);
  buf.writeUInt32BE(fields.salt2 >>> 0, 20);
  const [c0, c1] = walChecksum(buf.subarray(0, 24), bigEndian);
  buf.writeUInt32BE(c0, 24);
  buf.writeUInt32BE(c1, 28);
  return buf;
}

/** Decode a 24-byte frame header at `offset`. */
export function parseWalFrameHeader(buf: Buffer, offset = 0): WalFrameHeader {
  if (buf.length < offset + WAL_FRAME_HEADER_SIZE) throw new RangeError(`no WAL frame header at offset ${offset}`);
  return {
    pgno: buf.readUInt32BE(offset),
    commitSize: buf.readUInt32BE(offset + 4),
    salt1: buf.readUInt32BE(offset + 8),
    salt2: buf.readUInt32BE(offset + 12),
    checksum: [buf.readUInt32BE(offset + 16), buf.readUInt32BE(offset + 20)],
  };
}

/**
 * Build one frame (24-byte header + page) that continues the checksum chain
 * from `prev`, and return it with its cumulative checksum.
 */
export function encodeWalFrame(
  header: Pick<WalHeader, 'salt1' | 'salt2' | 'bigEndianChecksum' | 'pageSize'>,
  prev: WalChecksum,
  pgno: number,
  commitSize: number,
  page: Buffer,
): { frame: Buffer; checksum: WalChecksum } {
  if (page.length !== header.pageSize) {
    throw new RangeError(`page for pgno ${pgno} is ${page.length} bytes, WAL page size is ${header.pageSize}`);
  }
  const frame = Buffer.alloc(WAL_FRAME_HEADER_SIZE + header.pageSize);
  frame.writeUInt32BE(pgno, 0);
  frame.writeUInt32BE(commitSize, 4);
  frame.writeUInt32BE(header.salt1 >>> 0, 8);
  frame.writeUInt32BE(header.salt2 >>> 0, 12);
  page.copy(frame, WAL_FRAME_HEADER_SIZE);
  // The checksum skips the salts and the checksum fields themselves.
  let checksum = walChecksum(frame.subarray(0, 8), header.bigEndianChecksum, prev);
  checksum = walChecksum(page, header.bigEndianChecksum, checksum);
  frame.writeUInt32BE(checksum[0], 16);
  frame.writeUInt32BE(checksum[1], 20);
  return { frame, checksum };
}

/**
 * Walk frames in `frames` (a buffer whose byte 0 is the header of frame
 * `firstFrameIndex`), continuing the checksum chain from `seed`, and group the
 * valid frames into committed transactions. Use this when only the tail of a
 * WAL has been read; readWalFrames handles a whole WAL file.
 */
export function scanWalFrames(
  header: WalHeader,
  frames: Buffer,
  firstFrameIndex: number,
  seed: WalChecksum,
): WalScan {
  const frameSize = WAL_FRAME_HEADER_SIZE + header.pageSize;
  const transactions: WalTransaction[] = [];
  let pending: WalFrame[] = [];
  let checksum = seed;
  let committedChecksum = seed;
  let committedFrameEnd = firstFrameIndex;
  let index = firstFrameIndex;
  let offset = 0;
  let stop: WalScanStop = 'end';

  for (;;) {
    if (offset + frameSize > frames.length) {
      stop = offset === frames.length ? 'end' : 'partial-frame';
      break;
    }
    const frameHeader = parseWalFrameHeader(frames, offset);
    if (frameHeader.salt1 !== header.salt1 || frameHeader.salt2 !== header.salt2) { stop = 'salt-mismatch'; break; }
    if (frameHeader.pgno === 0) { stop = 'zero-pgno'; break; }
    const data = frames.subarray(offset + WAL_FRAME_HEADER_SIZE, offset + frameSize);
    let computed = walChecksum(frames.subarray(offset, offset + 8), header.bigEndianChecksum, checksum);
    computed = walChecksum(data, header.bigEndianChecksum, computed);
    if (computed[0] !== frameHeader.checksum[0] || computed[1] !== frameHeader.checksum[1]) { stop = 'checksum-mismatch'; break; }
    checksum = computed;
    pending.push({ ...frameHeader, index, data });
    index++;
    offset += frameSize;
    if (frameHeader.commitSize > 0) {
      const first = pending[0]!;
      transactions.push({ firstFrame: first.index, frames: pending, commitSize: frameHeader.commitSize, checksum });
      pending = [];
      committedFrameEnd = index;
      committedChecksum = checksum;
    }
  }

  return { header, transactions, committedFrameEnd, validFrameEnd: index, checksum: committedChecksum, stop };
}

/**
 * Scan a whole WAL file image: validate the header, then walk the frames from
 * `fromFrame` (default 0) and return the committed transactions.
 *
 * Resuming at fromFrame > 0 seeds the chain from frame fromFrame-1's stored
 * checksum, so the caller must already trust that frame (it was inside a
 * transaction an earlier scan returned). Throws if the header is invalid: a
 * WAL SQLite would ignore has no transactions to offer, and the caller must
 * notice rather than read "nothing new".
 */
export function readWalFrames(wal: Buffer, fromFrame = 0): WalScan {
  const problem = walHeaderProblem(wal);
  if (problem !== undefined) throw new Error(problem);
  const header = parseWalHeader(wal);
  let seed = header.checksum;
  if (fromFrame > 0) {
    const prevOffset = walFrameOffset(fromFrame - 1, header.pageSize);
    if (prevOffset + WAL_FRAME_HEADER_SIZE > wal.length) {
      throw new RangeError(`cannot resume at frame ${fromFrame}: WAL has no frame ${fromFrame - 1}`);
    }
    seed = parseWalFrameHeader(wal, prevOffset).checksum;
  }
  const start = Math.min(walFrameOffset(fromFrame, header.pageSize), wal.length);
  return scanWalFrames(header, wal.subarray(start), fromFrame, seed);
}

export interface WalFrameInput {
  pgno: number;
  data: Buffer;
  /** Database size in pages after commit on a commit frame; omit or 0 otherwise. */
  commitSize?: number;
}

/** Build a complete WAL image (header + frames); for tests and fixtures. */
export function encodeWal(
  pageSize: number,
  salts: { salt1: number; salt2: number },
  frames: readonly WalFrameInput[],
  options: { bigEndianChecksum?: boolean; checkpointSeq?: number } = {},
): Buffer {
  const headerBuf = encodeWalHeader({ pageSize, salt1: salts.salt1, salt2: salts.salt2, ...options });
  const header = parseWalHeader(headerBuf);
  const parts: Buffer[] = [headerBuf];
  let checksum = header.checksum;
  for (const f of frames) {
    const encoded = encodeWalFrame(header, checksum, f.pgno, f.commitSize ?? 0, f.data);
    parts.push(encoded.frame);
    checksum = encoded.checksum;
  }
  return Buffer.concat(parts);
}
