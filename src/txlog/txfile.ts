// The transaction file: one committed transaction (or a snapshot: min TXID 1
// and every page) as one self-checking byte string. docs/format.md gives the
// layout byte by byte; the offsets below are the same table.
//
// Decoding trusts nothing: every field is range-checked before it is used to
// size anything, so arbitrary bytes produce a TxFileError, never another
// exception, a huge allocation or a crash inside lz4.

import { compressSync } from 'lz4-napi';
import { decompressInto } from './lz4.js';

import { isValidPageSize, lockPageNumber } from '../sqlite/dbheader.js';
import { CHECKSUM_FLAG, crc64, databaseChecksum, formatHex64 as hex } from './checksum.js';

export const TX_MAGIC = Buffer.from('LFTX', 'latin1');
export const TX_VERSION = 1;
/** Flag bit 0: the body is one lz4 block (with its uncompressed length in front). */
export const TX_FLAG_LZ4 = 0x0001;
export const TX_HEADER_SIZE = 96;
/** postApplyChecksum u64 + fileChecksum u64. */
export const TX_TRAILER_SIZE = 16;

// Header field offsets (all integers big-endian).
const OFF_VERSION = 4;
const OFF_FLAGS = 6;
const OFF_PAGE_SIZE = 8;
const OFF_COMMIT_SIZE = 12;
const OFF_MIN_TXID = 16;
const OFF_MAX_TXID = 24;
const OFF_TIMESTAMP = 32;
const OFF_PRE_APPLY = 40;
const OFF_NODE_ID = 48;
const OFF_PAGE_COUNT = 56;
const OFF_WAL_SALT1 = 60;
const OFF_WAL_SALT2 = 64;
const OFF_RESERVED_A = 68; // 4 zero bytes, so the u64s that follow stay 8-aligned
const OFF_WAL_FRAME_END = 72;
const OFF_BODY_SIZE = 80;
const OFF_RESERVED_B = 88; // 8 zero bytes, to the end of the header

/** The largest ratio an lz4 block can expand by (a 1-byte token can stand for up to 255 bytes and more, never 256). */
const LZ4_MAX_EXPANSION = 255;
/** Node 20 cannot hold a larger Buffer: a file claiming more is corrupt. */
const MAX_FILE_SIZE = 2 ** 32;
const U64_MAX = (1n << 64n) - 1n;
/** The high 32 bits of 2^53-1: a u64 whose high word is larger does not fit a JS number. */
const SAFE_HIGH_WORD = 0x1fffff;

/** One page frame of a transaction. */
export interface TransactionPage {
  pgno: number;
  data: Buffer;
}

/** What the header and the decoded file both carry. */
interface TransactionFields {
  pageSize: number;
  /** Database size in pages after this transaction. */
  commitSize: number;
  minTxid: number;
  maxTxid: number;
  /** Commit time, ms since the epoch. */
  timestamp: number;
  /** Database checksum before the transaction; 0n when minTxid is 1 (no database yet). */
  preApplyChecksum: bigint;
  /** The node that committed it. */
  nodeId: bigint;
  /** WAL salts of the -wal the transaction came from (0 when not from a WAL); for crash recovery. */
  walSalt1: number;
  walSalt2: number;
  /** Byte offset in the -wal just past this transaction's commit frame; 0 when not from a WAL. */
  walFrameEnd: number;
}

export interface TransactionFile extends TransactionFields {
  /** Database checksum after the transaction. */
  postApplyChecksum: bigint;
  /** Ascending by pgno. Decoded pages are views into the decoded buffer (or its decompressed body). */
  pages: TransactionPage[];
}

/** The fixed-size header: what a listing needs, without reading the body. */
export interface TransactionHeader extends TransactionFields {
  version: number;
  compressed: boolean;
  pageCount: number;
  /** Bytes of body as stored (compressed size when compressed). */
  bodySize: number;
  /** Header + body + trailer. */
  fileSize: number;
}

/** A transaction file that is malformed, corrupt, or does not chain; the message is one line saying what. */
export class TxFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TxFileError';
  }
}

/** `%016x-%016x.ltx` of the TXID range. */
export function transactionFileName(minTxid: number, maxTxid: number): string {
  return `${hex(minTxid)}-${hex(maxTxid)}.ltx`;
}

const FILE_NAME_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$/;

/** The TXID range of a transaction file name, or undefined if the name is not one. */
export function parseTransactionFileName(name: string): { minTxid: number; maxTxid: number } | undefined {
  const match = FILE_NAME_PATTERN.exec(name);
  if (!match) return undefined;
  const minTxid = Number.parseInt(match[1], 16);
  const maxTxid = Number.parseInt(match[2], 16);
  if (!Number.isSafeInteger(minTxid) || !Number.isSafeInteger(maxTxid) || minTxid < 1 || maxTxid < minTxid) return undefined;
  return { minTxid, maxTxid };
}

/** Throws TxFileError for a file described as `label` ("transaction file <name or path>"). */
type Fail = (detail: string) => never;

/** The label is built only on failure: encoding and decoding run once per commit. */
function failer(source: string | undefined, minTxid?: number, maxTxid?: number): Fail {
  return (detail) => {
    throw new TxFileError(`${labelFor(source, minTxid, maxTxid)}: ${detail}`);
  };
}

function labelFor(source: string | undefined, minTxid?: number, maxTxid?: number): string {
  if (source !== undefined) return `transaction file ${source}`;
  if (Number.isSafeInteger(minTxid) && Number.isSafeInteger(maxTxid)) return `transaction file ${transactionFileName(minTxid!, maxTxid!)}`;
  return 'transaction file';
}

/** Checks shared by encode and decode, so encode never writes what decode would reject. */
function checkHeaderRules(h: TransactionFields, pageCount: number, fail: Fail): void {
  // Written out check by check, without arrays or spreads: this runs for every commit.
  if (!isValidPageSize(h.pageSize)) fail(`page size ${h.pageSize} is not a power of two in 512..65536`);
  if (!Number.isInteger(h.commitSize) || h.commitSize < 1 || h.commitSize > 0xffffffff) fail(`commit size ${h.commitSize} is not in 1..4294967295`);
  if (!isSafeAtLeast(h.minTxid, 1)) fail(`min TXID ${h.minTxid} is not an integer in 1..2^53-1`);
  if (!isSafeAtLeast(h.maxTxid, 1)) fail(`max TXID ${h.maxTxid} is not an integer in 1..2^53-1`);
  if (h.maxTxid < h.minTxid) fail(`max TXID ${h.maxTxid} is below min TXID ${h.minTxid}`);
  if (!isSafeAtLeast(h.timestamp, 0)) fail(`timestamp ${h.timestamp} is not an integer in 0..2^53-1`);
  if (!isSafeAtLeast(h.walFrameEnd, 0)) fail(`WAL frame end ${h.walFrameEnd} is not an integer in 0..2^53-1`);
  if (!isU32(h.walSalt1)) fail(`WAL salt 1 ${h.walSalt1} is not a u32`);
  if (!isU32(h.walSalt2)) fail(`WAL salt 2 ${h.walSalt2} is not a u32`);
  if (!isU64(h.nodeId)) fail(`node id ${h.nodeId} is not a u64`);
  if (!isU64(h.preApplyChecksum)) fail(`pre-apply checksum ${h.preApplyChecksum} is not a u64`);
  if (pageCount > h.commitSize) fail(`page count ${pageCount} exceeds commit size ${h.commitSize}`);
  if (h.minTxid === 1) {
    // Applied to no database at all, so it must carry every page.
    const lockPage = lockPageNumber(h.pageSize);
    const needed = h.commitSize - (lockPage <= h.commitSize ? 1 : 0);
    if (pageCount !== needed) fail(`min TXID 1 (a snapshot) must hold all ${needed} pages, holds ${pageCount}`);
    if (h.preApplyChecksum !== 0n) fail(`min TXID 1 (a snapshot) has pre-apply checksum ${hex(h.preApplyChecksum)}, not 0`);
  } else if ((h.preApplyChecksum & CHECKSUM_FLAG) === 0n) {
    fail(`pre-apply checksum ${hex(h.preApplyChecksum)} lacks the flag bit`);
  }
}

const isSafeAtLeast = (v: number, min: number): boolean => Number.isSafeInteger(v) && v >= min;
const isU32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const isU64 = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n && v <= U64_MAX;

/** Checks page numbers: each in 1..commitSize, not the lock page, strictly ascending. */
function checkPageNumbers(pages: readonly TransactionPage[], pageSize: number, commitSize: number, fail: Fail): void {
  const lockPage = lockPageNumber(pageSize);
  let previous = 0;
  for (const { pgno } of pages) {
    if (pgno === 0) fail('page number 0');
    if (pgno > commitSize) fail(`page number ${pgno} beyond commit size ${commitSize}`);
    if (pgno === lockPage) fail(`page ${pgno} is the lock page`);
    if (pgno === previous) fail(`page ${pgno} appears twice`);
    if (pgno < previous) fail(`page ${pgno} out of order (after page ${previous})`);
    previous = pgno;
  }
}

function checkPostApply(postApplyChecksum: bigint, fail: Fail): void {
  if (!isU64(postApplyChecksum)) fail(`post-apply checksum ${postApplyChecksum} is not a u64`);
  if ((postApplyChecksum & CHECKSUM_FLAG) === 0n) fail(`post-apply checksum ${hex(postApplyChecksum)} lacks the flag bit`);
}

/** A snapshot's post-apply checksum is the checksum of its pages: cheap to confirm, and it catches writer bugs. */
function checkSnapshotChecksum(tx: TransactionFile, fail: Fail): void {
  if (tx.minTxid !== 1) return;
  const actual = databaseChecksum(tx.pages.map((p): [number, Uint8Array] => [p.pgno, p.data]), tx.pageSize);
  if (actual !== tx.postApplyChecksum) {
    fail(`post-apply checksum ${hex(tx.postApplyChecksum)} differs from the checksum of its pages ${hex(actual)}`);
  }
}

function bodyLength(pageCount: number, pageSize: number): number {
  return pageCount * (4 + pageSize);
}

/** Writes an integer below 2^53 as a big-endian u64 without a BigInt. */
function writeSafeU64(out: Buffer, value: number, offset: number): void {
  out.writeUInt32BE(Math.floor(value / 0x100000000), offset);
  out.writeUInt32BE(value >>> 0, offset + 4);
}

function writeHeader(out: Buffer, tx: TransactionFile, compressed: boolean, bodySize: number): void {
  out.fill(0, 0, TX_HEADER_SIZE);
  TX_MAGIC.copy(out, 0);
  out.writeUInt16BE(TX_VERSION, OFF_VERSION);
  out.writeUInt16BE(compressed ? TX_FLAG_LZ4 : 0, OFF_FLAGS);
  out.writeUInt32BE(tx.pageSize, OFF_PAGE_SIZE);
  out.writeUInt32BE(tx.commitSize, OFF_COMMIT_SIZE);
  writeSafeU64(out, tx.minTxid, OFF_MIN_TXID);
  writeSafeU64(out, tx.maxTxid, OFF_MAX_TXID);
  writeSafeU64(out, tx.timestamp, OFF_TIMESTAMP);
  out.writeBigUInt64BE(tx.preApplyChecksum, OFF_PRE_APPLY);
  out.writeBigUInt64BE(tx.nodeId, OFF_NODE_ID);
  out.writeUInt32BE(tx.pages.length, OFF_PAGE_COUNT);
  out.writeUInt32BE(tx.walSalt1, OFF_WAL_SALT1);
  out.writeUInt32BE(tx.walSalt2, OFF_WAL_SALT2);
  writeSafeU64(out, tx.walFrameEnd, OFF_WAL_FRAME_END);
  writeSafeU64(out, bodySize, OFF_BODY_SIZE);
}

function writePages(out: Buffer, offset: number, pages: TransactionPage[], pageSize: number): void {
  for (const page of pages) {
    out.writeUInt32BE(page.pgno, offset);
    out.set(page.data, offset + 4);
    offset += 4 + pageSize;
  }
}

/** The uncompressed body of a small transaction before lz4: reused, since a Buffer past 4 KiB costs more to allocate than to fill. */
const bodyScratch = Buffer.allocUnsafe(256 * 1024);

/**
 * Encoded files are cut from slabs, as Node's own pool does for buffers
 * under 4 KiB: a separate allocation past that costs more than encoding a
 * page. A slab is never written twice; it is freed once no file cut from
 * it is referenced (the log drops them once written).
 */
const SLAB_BYTES = 256 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabUsed = 0;

function allocEncoded(size: number): Buffer {
  if (size > SLAB_BYTES / 4) return Buffer.allocUnsafe(size);
  if (slabUsed + size > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += (size + 7) & ~7; // 8-byte aligned, as Node's pool keeps them
  return out;
}

/** Encodes one transaction; throws TxFileError if it breaks any rule decoding enforces. */
export function encodeTransaction(tx: TransactionFile, opts: { compress: boolean }): Buffer {
  const fail: Fail = failer(undefined, tx.minTxid, tx.maxTxid);
  checkHeaderRules(tx, tx.pages.length, fail);
  checkPostApply(tx.postApplyChecksum, fail);
  for (const page of tx.pages) {
    if (page.data.length !== tx.pageSize) fail(`page ${page.pgno} has ${page.data.length} bytes, page size is ${tx.pageSize}`);
  }
  checkPageNumbers(tx.pages, tx.pageSize, tx.commitSize, fail);
  checkSnapshotChecksum(tx, fail);

  const rawBodySize = bodyLength(tx.pages.length, tx.pageSize);
  let out: Buffer;
  if (opts.compress) {
    const body = rawBodySize <= bodyScratch.length ? bodyScratch.subarray(0, rawBodySize) : Buffer.allocUnsafe(rawBodySize);
    writePages(body, 0, tx.pages, tx.pageSize);
    const packed = compressSync(body);
    out = allocEncoded(TX_HEADER_SIZE + packed.length + TX_TRAILER_SIZE);
    writeHeader(out, tx, true, packed.length);
    packed.copy(out, TX_HEADER_SIZE);
  } else {
    out = allocEncoded(TX_HEADER_SIZE + rawBodySize + TX_TRAILER_SIZE);
    writeHeader(out, tx, false, rawBodySize);
    writePages(out, TX_HEADER_SIZE, tx.pages, tx.pageSize);
  }
  if (out.length > MAX_FILE_SIZE) fail(`encoded size ${out.length} exceeds ${MAX_FILE_SIZE} bytes`);
  const trailer = out.length - TX_TRAILER_SIZE;
  out.writeBigUInt64BE(tx.postApplyChecksum, trailer);
  out.writeBigUInt64BE(crc64(out.subarray(0, trailer + 8)), trailer + 8);
  return out;
}

/** Reads a u64 that must fit a JS number (TXIDs, sizes, times). */
function readSafeU64(buf: Buffer, offset: number, what: string, fail: Fail): number {
  // Two halves, not a BigInt: headers are read for every transaction streamed or uploaded.
  const high = buf.readUInt32BE(offset);
  if (high > SAFE_HIGH_WORD) fail(`${what} ${buf.readBigUInt64BE(offset)} exceeds 2^53-1`);
  return high * 0x100000000 + buf.readUInt32BE(offset + 4);
}

function parseHeader(buf: Buffer, source: string | undefined): TransactionHeader {
  let fail: Fail = failer(source);
  if (buf.length >= TX_MAGIC.length && !buf.subarray(0, TX_MAGIC.length).equals(TX_MAGIC)) {
    fail(`bad magic ${buf.subarray(0, TX_MAGIC.length).toString('hex')} (expected "LFTX")`);
  }
  if (buf.length < TX_HEADER_SIZE) fail(`truncated: ${buf.length} of ${TX_HEADER_SIZE} header bytes`);
  const version = buf.readUInt16BE(OFF_VERSION);
  if (version !== TX_VERSION) fail(`unsupported version ${version}`);
  const flags = buf.readUInt16BE(OFF_FLAGS);
  if ((flags & ~TX_FLAG_LZ4) !== 0) fail(`unknown flags 0x${flags.toString(16).padStart(4, '0')}`);
  if (buf.readUInt32BE(OFF_RESERVED_A) !== 0 || buf.readUInt32BE(OFF_RESERVED_B) !== 0 || buf.readUInt32BE(OFF_RESERVED_B + 4) !== 0) fail('reserved header bytes are not zero');

  const minTxid = readSafeU64(buf, OFF_MIN_TXID, 'min TXID', fail);
  const maxTxid = readSafeU64(buf, OFF_MAX_TXID, 'max TXID', fail);
  if (minTxid >= 1 && maxTxid >= minTxid) fail = failer(source, minTxid, maxTxid);

  const header: TransactionHeader = {
    version,
    compressed: (flags & TX_FLAG_LZ4) !== 0,
    pageSize: buf.readUInt32BE(OFF_PAGE_SIZE),
    commitSize: buf.readUInt32BE(OFF_COMMIT_SIZE),
    minTxid,
    maxTxid,
    timestamp: readSafeU64(buf, OFF_TIMESTAMP, 'timestamp', fail),
    preApplyChecksum: buf.readBigUInt64BE(OFF_PRE_APPLY),
    nodeId: buf.readBigUInt64BE(OFF_NODE_ID),
    pageCount: buf.readUInt32BE(OFF_PAGE_COUNT),
    walSalt1: buf.readUInt32BE(OFF_WAL_SALT1),
    walSalt2: buf.readUInt32BE(OFF_WAL_SALT2),
    walFrameEnd: readSafeU64(buf, OFF_WAL_FRAME_END, 'WAL frame end', fail),
    bodySize: readSafeU64(buf, OFF_BODY_SIZE, 'body size', fail),
    fileSize: 0,
  };
  checkHeaderRules(header, header.pageCount, fail);

  const rawBodySize = bodyLength(header.pageCount, header.pageSize);
  if (!header.compressed && header.bodySize !== rawBodySize) {
    fail(`body size ${header.bodySize} does not match ${header.pageCount} pages of ${header.pageSize} bytes (${rawBodySize})`);
  }
  if (header.compressed && (header.bodySize < 4 || rawBodySize > header.bodySize * LZ4_MAX_EXPANSION + 64)) {
    fail(`compressed body of ${header.bodySize} bytes cannot hold ${header.pageCount} pages of ${header.pageSize} bytes`);
  }
  header.fileSize = TX_HEADER_SIZE + header.bodySize + TX_TRAILER_SIZE;
  if (header.fileSize > MAX_FILE_SIZE) fail(`file size ${header.fileSize} exceeds ${MAX_FILE_SIZE} bytes`);
  return header;
}

/**
 * Decodes and checks the header alone (buf may hold just the file's first
 * bytes). It does not verify the file checksum: use it for listings only.
 */
export function decodeTransactionHeader(buf: Buffer, source?: string): TransactionHeader {
  return parseHeader(buf, source);
}

/** The body's page frames, uncompressed; a view into buf when the body is not compressed. */
function readBody(buf: Buffer, header: TransactionHeader, fail: Fail): Buffer {
  const stored = buf.subarray(TX_HEADER_SIZE, TX_HEADER_SIZE + header.bodySize);
  if (!header.compressed) return stored;
  const expected = bodyLength(header.pageCount, header.pageSize);
  // Checked before lz4 sees it: the library allocates whatever this prefix says.
  const declared = stored.readUInt32LE(0);
  if (declared !== expected) fail(`lz4 body declares ${declared} uncompressed bytes, ${header.pageCount} pages need ${expected}`);
  const body = Buffer.allocUnsafe(expected);
  if (!decompressInto(stored, body)) fail(`lz4 body corrupt: it does not decompress to the ${expected} bytes it declares`);
  return body;
}

/**
 * Decodes a whole transaction file and checks everything that can be checked
 * without the database: sizes, the file checksum, page order and bounds, and
 * for a snapshot that its checksum matches its pages. `source` (a file name
 * or path) labels error messages; by default the name derived from the TXIDs.
 */
export function decodeTransaction(buf: Buffer, source?: string): TransactionFile {
  const header = parseHeader(buf, source);
  const fail: Fail = failer(source, header.minTxid, header.maxTxid);
  if (buf.length < header.fileSize) fail(`truncated: ${buf.length} of ${header.fileSize} bytes`);
  if (buf.length > header.fileSize) fail(`${buf.length - header.fileSize} bytes after the trailer (file is ${buf.length}, expected ${header.fileSize})`);

  const trailer = header.fileSize - TX_TRAILER_SIZE;
  const storedChecksum = buf.readBigUInt64BE(trailer + 8);
  const actualChecksum = crc64(buf.subarray(0, trailer + 8));
  if (storedChecksum !== actualChecksum) {
    fail(`trailer checksum mismatch: stored ${hex(storedChecksum)}, computed ${hex(actualChecksum)}`);
  }
  const postApplyChecksum = buf.readBigUInt64BE(trailer);
  checkPostApply(postApplyChecksum, fail);

  const body = readBody(buf, header, fail);
  const frameSize = 4 + header.pageSize;
  const pages: TransactionPage[] = new Array(header.pageCount);
  for (let i = 0, offset = 0; i < header.pageCount; i++, offset += frameSize) {
    pages[i] = { pgno: body.readUInt32BE(offset), data: body.subarray(offset + 4, offset + frameSize) };
  }
  checkPageNumbers(pages, header.pageSize, header.commitSize, fail);

  const tx: TransactionFile = {
    pageSize: header.pageSize,
    commitSize: header.commitSize,
    minTxid: header.minTxid,
    maxTxid: header.maxTxid,
    timestamp: header.timestamp,
    preApplyChecksum: header.preApplyChecksum,
    postApplyChecksum,
    nodeId: header.nodeId,
    walSalt1: header.walSalt1,
    walSalt2: header.walSalt2,
    walFrameEnd: header.walFrameEnd,
    pages,
  };
  checkSnapshotChecksum(tx, fail);
  return tx;
}

/** Throws TxFileError unless `next` applies directly on top of the state `prev` left. */
export function verifyChain(prev: { maxTxid: number; postApplyChecksum: bigint }, next: Pick<TransactionFile, 'minTxid' | 'maxTxid' | 'preApplyChecksum'>): void {
  const fail: Fail = failer(undefined, next.minTxid, next.maxTxid);
  if (next.minTxid !== prev.maxTxid + 1) fail(`min TXID ${next.minTxid} does not follow max TXID ${prev.maxTxid}`);
  if (next.preApplyChecksum !== prev.postApplyChecksum) {
    fail(`pre-apply checksum ${hex(next.preApplyChecksum)} differs from the previous post-apply checksum ${hex(prev.postApplyChecksum)}`);
  }
}

/** Whether a stored transaction file's body is lz4 (its header's flag; the file is not otherwise checked). */
export function isCompressedFile(file: Buffer): boolean {
  return file.length >= TX_HEADER_SIZE && (file.readUInt16BE(OFF_FLAGS) & TX_FLAG_LZ4) !== 0;
}

/** One transaction file as stored, with the fields a WAL_SEGMENT header needs. */
export interface SegmentFile { bytes: Buffer; minTxid: number; maxTxid: number; preApplyChecksum: bigint; postApplyChecksum: bigint; pageSize: number; commitSize: number }

/** The transaction files in a run of log bytes, with what a WAL_SEGMENT header needs of each. */
export function splitTransactionFiles(bytes: Buffer, entries: readonly { length: number }[]): SegmentFile[] {
  let offset = 0;
  return entries.map((e) => {
    const file = bytes.subarray(offset, offset + e.length);
    offset += e.length;
    return segmentFileOf(file, decodeTransactionHeader(file.subarray(0, TX_HEADER_SIZE)));
  });
}

/** A stored file as a SegmentFile, from its decoded header (the post-apply checksum is read from its trailer). */
export function segmentFileOf(file: Buffer, h: TransactionHeader): SegmentFile {
  return {
    bytes: file, minTxid: h.minTxid, maxTxid: h.maxTxid, preApplyChecksum: h.preApplyChecksum,
    postApplyChecksum: file.readBigUInt64BE(file.length - TX_TRAILER_SIZE), pageSize: h.pageSize, commitSize: h.commitSize,
  };
}
