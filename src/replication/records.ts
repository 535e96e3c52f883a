// The replication stream's records: an 80-byte header, a database name and a
// payload, each record sealed by a CRC. docs/protocol.md gives the layout
// byte by byte; the offsets below are its table.
//
// Decoding trusts nothing: the header is range-checked as soon as its 80 bytes
// are in, before its lengths size anything, so a corrupt or hostile stream
// yields a StreamError, never a huge allocation or another exception.

import { compressSync } from 'lz4-napi';
import { decompressInto } from '../txlog/lz4.js';

import { isValidPageSize, lockPageNumber } from '../sqlite/dbheader.js';
import { CHECKSUM_FLAG, crc64, formatHex64 as hex, PageChecksums } from '../txlog/checksum.js';
import {
  decodeTransaction, decodeTransactionHeader, segmentFileOf, transactionFileName, TX_HEADER_SIZE, TX_TRAILER_SIZE, TxFileError, verifyChain,
  type TransactionFile,
} from '../txlog/txfile.js';
import type { SegmentFile } from '../txlog/txfile.js';

export const RECORD_MAGIC = Buffer.from('LFSR', 'latin1');
export const PROTOCOL_VERSION = 1;
export const RECORD_HEADER_SIZE = 80;
/** A 64 MiB chunk of pages, plus room for lz4's worst-case growth. */
export const MAX_PAYLOAD = 65 * 1024 * 1024;
export const MAX_NAME = 1024;
export const MAX_CHUNK_PAGES = 4096;
/** pageSize × pageCount of one SNAPSHOT chunk, uncompressed. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

export enum RecordType { Hello = 1, Snapshot = 2, WalSegment = 3, Ready = 4, Heartbeat = 5, Drop = 6, Handoff = 7 }
export const RecordFlag = { lz4: 1, last: 2 } as const;

export interface StreamRecord {
  type: RecordType; flags: number; name: string; pageSize: number; commitSize: number;
  minTxid: number; maxTxid: number; preApplyChecksum: bigint; postApplyChecksum: bigint;
  timestamp: number; firstPgno: number; pageCount: number;
  /** A view into the bytes the reader was given (no copy). */
  payload: Buffer;
}

/** A malformed, corrupt or inconsistent record; the message is one line: `stream record #n (TYPE db): what`. */
export class StreamError extends Error {
  override name = 'StreamError';
}

/** The header after the 4-byte magic, as docs/protocol.md tables it (integers big-endian). */
const HEADER_FIELDS: { key: keyof RecordHeader; offset: number; size: 1 | 2 | 4 | 8; what: string }[] = [
  { key: 'type', offset: 4, size: 1, what: 'type' }, { key: 'flags', offset: 5, size: 1, what: 'flags' },
  { key: 'nameLength', offset: 6, size: 2, what: 'name length' }, { key: 'pageSize', offset: 8, size: 4, what: 'page size' },
  { key: 'commitSize', offset: 12, size: 4, what: 'commit size' }, { key: 'minTxid', offset: 16, size: 8, what: 'min TXID' },
  { key: 'maxTxid', offset: 24, size: 8, what: 'max TXID' }, { key: 'preApplyChecksum', offset: 32, size: 8, what: 'pre-apply checksum' },
  { key: 'postApplyChecksum', offset: 40, size: 8, what: 'post-apply checksum' }, { key: 'timestamp', offset: 48, size: 8, what: 'timestamp' },
  { key: 'firstPgno', offset: 56, size: 4, what: 'first pgno' }, { key: 'pageCount', offset: 60, size: 4, what: 'page count' },
  { key: 'payloadLength', offset: 64, size: 4, what: 'payload length' },
];
export const OFF_TYPE = 4;
const OFF_RESERVED = 68; // 4 zero bytes, so the checksum stays 8-aligned
const OFF_CHECKSUM = 72;
const CHECKSUM_FIELDS = new Set<keyof RecordHeader>(['preApplyChecksum', 'postApplyChecksum']);

const TYPE_NAMES: Record<number, string> = {
  [RecordType.Hello]: 'HELLO', [RecordType.Snapshot]: 'SNAPSHOT', [RecordType.WalSegment]: 'WAL_SEGMENT', [RecordType.Ready]: 'READY',
  [RecordType.Heartbeat]: 'HEARTBEAT', [RecordType.Drop]: 'DROP', [RecordType.Handoff]: 'HANDOFF',
};
const NAMED_TYPES: readonly number[] = [RecordType.Snapshot, RecordType.WalSegment, RecordType.Drop];
const EMPTY_TYPES: readonly number[] = [RecordType.Ready, RecordType.Heartbeat, RecordType.Drop];
const PAGED: RecordType[] = [RecordType.Snapshot, RecordType.WalSegment];
const U64_MAX = (1n << 64n) - 1n;
const EMPTY = Buffer.alloc(0);
// fatal: reject invalid UTF-8; ignoreBOM: keep a leading U+FEFF, so decode(encode(s)) === s.
export const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The fixed header as numbers: the record without name and payload, with their lengths. */
export type RecordHeader = Omit<StreamRecord, 'name' | 'payload'> & { nameLength: number; payloadLength: number };

/** Which types use each header field; every other type must leave it 0. */
const FIELD_USERS: [keyof RecordHeader, string, readonly RecordType[]][] = [
  ['pageSize', 'page size', PAGED], ['commitSize', 'commit size', PAGED],
  ['minTxid', 'min TXID', PAGED], ['maxTxid', 'max TXID', PAGED],
  ['preApplyChecksum', 'pre-apply checksum', [RecordType.WalSegment]], ['postApplyChecksum', 'post-apply checksum', PAGED],
  ['firstPgno', 'first pgno', [RecordType.Snapshot]], ['pageCount', 'page count', [RecordType.Snapshot]],
];

export type Fail = (what: string) => never;

/** Names go into one-line messages: quote any with control characters. */
function printableName(name: string): string {
  return /^[^\x00-\x1f\x7f-\x9f"]+$/.test(name) ? name : JSON.stringify(name);
}

/** `stream record #n (TYPE db)`; without a type (not yet read) just `stream record #n`. */
export function recordLabel(seq: number | undefined, type: number | undefined, name?: string): string {
  const number = seq === undefined ? '' : ` #${seq}`;
  if (type === undefined) return `stream record${number}`;
  const db = name ? ` ${printableName(name)}` : '';
  return `stream record${number} (${recordTypeName(type)}${db})`;
}

export function failer(label: string): Fail {
  return (what) => {
    throw new StreamError(`${label}: ${what.replace(/\s*\n\s*/g, ' ')}`);
  };
}

// Record numbers of the records a RecordReader returned, for the payload decoders' messages
// (kept aside so StreamRecord stays a plain value that compares and copies cleanly).
const recordNumbers = new WeakMap<StreamRecord, number>();

export function failFor(r: StreamRecord): Fail {
  return failer(recordLabel(recordNumbers.get(r), r.type, r.name));
}

/** The wire name of a record type (HELLO, WAL_SEGMENT, ...), for messages and logs. */
export function recordTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

/** Name rules beyond length: the name becomes a file name in the mount. */
function checkName(name: string, fail: Fail): void {
  if (name.includes('/')) fail(`name ${JSON.stringify(name)} contains "/"`);
  if (name.includes('\0')) fail(`name ${JSON.stringify(name)} contains NUL`);
  if (name === '.' || name === '..') fail(`name ${JSON.stringify(name)} is not a database name`);
}

/** The pages a SNAPSHOT chunk covers never include the lock page: chunks end before it and resume after it. */
function checkChunkRange(firstPgno: number, pageCount: number, pageSize: number, commitSize: number, fail: Fail): void {
  const end = firstPgno + pageCount - 1;
  const lockPage = lockPageNumber(pageSize);
  if (firstPgno <= lockPage && lockPage <= end) fail(`chunk pages ${firstPgno}..${end} include the lock page ${lockPage}`);
  if (end > commitSize) fail(`chunk pages ${firstPgno}..${end} go beyond commit size ${commitSize}`);
}

function checkPagedHeader(h: RecordHeader, fail: Fail): void {
  if (!isValidPageSize(h.pageSize)) fail(`page size ${h.pageSize} is not a power of two in 512..65536`);
  if (h.commitSize < 1) fail('commit size 0 (must be at least 1)');
  if (h.minTxid < 1) fail('min TXID 0 (must be at least 1)');
  if ((h.postApplyChecksum & CHECKSUM_FLAG) === 0n) fail(`post-apply checksum ${hex(h.postApplyChecksum)} lacks the flag bit`);
}

function checkSnapshotHeader(h: RecordHeader, fail: Fail): void {
  if (h.minTxid !== 1) fail(`min TXID ${h.minTxid} (a SNAPSHOT's is 1)`);
  if (h.firstPgno < 1) fail('first pgno 0');
  if (h.pageCount < 1 || h.pageCount > MAX_CHUNK_PAGES) fail(`page count ${h.pageCount} is not in 1..${MAX_CHUNK_PAGES}`);
  const rawSize = h.pageCount * h.pageSize;
  if (rawSize > MAX_CHUNK_BYTES) fail(`${h.pageCount} pages of ${h.pageSize} bytes exceed the ${MAX_CHUNK_BYTES}-byte chunk limit`);
  checkChunkRange(h.firstPgno, h.pageCount, h.pageSize, h.commitSize, fail);
  if (h.flags & RecordFlag.lz4) {
    if (h.payloadLength <= 4) fail(`lz4 payload of ${h.payloadLength} bytes is too short`);
  } else if (h.payloadLength !== rawSize) {
    fail(`payload length ${h.payloadLength} is not ${h.pageCount} pages of ${h.pageSize} bytes (${rawSize})`);
  }
}

function checkWalSegmentHeader(h: RecordHeader, fail: Fail): void {
  if (h.minTxid === 1 && h.preApplyChecksum !== 0n) fail(`pre-apply checksum ${hex(h.preApplyChecksum)} with min TXID 1 (must be 0)`);
  if (h.minTxid > 1 && (h.preApplyChecksum & CHECKSUM_FLAG) === 0n) fail(`pre-apply checksum ${hex(h.preApplyChecksum)} lacks the flag bit`);
  if (h.payloadLength < TX_HEADER_SIZE + TX_TRAILER_SIZE) fail(`payload length ${h.payloadLength} cannot hold a transaction file`);
}

/** Every header rule, shared by the reader and the encoder so the encoder never writes what the reader rejects. */
function checkHeader(h: RecordHeader, fail: Fail): void {
  const type = recordTypeName(h.type);
  if (!(h.type in TYPE_NAMES)) fail(`unknown record type ${h.type}`);
  const allowedFlags = h.type === RecordType.Snapshot ? RecordFlag.lz4 | RecordFlag.last : 0;
  if (h.flags & ~allowedFlags) {
    fail(allowedFlags ? `unknown flag bits 0x${h.flags.toString(16)}` : `flags 0x${h.flags.toString(16)} on ${type} (only SNAPSHOT has flags)`);
  }
  const named = NAMED_TYPES.includes(h.type);
  if (h.nameLength > MAX_NAME) fail(`name length ${h.nameLength} exceeds ${MAX_NAME}`);
  if (named && h.nameLength === 0) fail(`name length 0: ${type} needs a database name`);
  if (!named && h.nameLength !== 0) fail(`name length ${h.nameLength}: ${type} has no database name`);
  if (h.payloadLength > MAX_PAYLOAD) fail(`payload length ${h.payloadLength} exceeds ${MAX_PAYLOAD}`);
  if (EMPTY_TYPES.includes(h.type) && h.payloadLength !== 0) fail(`payload length ${h.payloadLength}: ${type} has no payload`);
  if (h.minTxid > h.maxTxid) fail(`min TXID ${h.minTxid} is above max TXID ${h.maxTxid}`);
  for (const [field, what, users] of FIELD_USERS) {
    const value = h[field];
    if (!users.includes(h.type) && value !== 0 && value !== 0n) fail(`${what} ${value} on ${type} (must be 0)`);
  }
  if (h.type === RecordType.Snapshot || h.type === RecordType.WalSegment) checkPagedHeader(h, fail);
  if (h.type === RecordType.Snapshot) checkSnapshotHeader(h, fail);
  if (h.type === RecordType.WalSegment) checkWalSegmentHeader(h, fail);
}

/** Parses and checks the 80 header bytes of record number `seq`. */
export function readHeader(buf: Buffer, seq: number): RecordHeader {
  const type = buf[OFF_TYPE];
  const fail: Fail = failer(recordLabel(seq, type));
  if (!buf.subarray(0, 4).equals(RECORD_MAGIC)) fail(`bad magic ${buf.subarray(0, 4).toString('hex')} (expected "LFSR")`);
  if (!(type in TYPE_NAMES)) fail(`unknown record type ${type}`);
  if (buf.readUInt32BE(OFF_RESERVED) !== 0) fail('reserved header bytes 68..71 are not zero');
  const fields: Record<string, number | bigint> = {};
  for (const { key, offset, size, what } of HEADER_FIELDS) {
    if (size === 8) {
      const value = buf.readBigUInt64BE(offset);
      if (CHECKSUM_FIELDS.has(key)) fields[key] = value;
      else if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${value} exceeds 2^53-1`);
      else fields[key] = Number(value);
    } else {
      fields[key] = buf.readUIntBE(offset, size);
    }
  }
  const header = fields as unknown as RecordHeader;
  checkHeader(header, fail);
  return header;
}

/** crc64 of header bytes 0..71 ‖ name ‖ payload: everything but the checksum field itself. */
function recordChecksum(record: Buffer): bigint {
  return crc64(record.subarray(RECORD_HEADER_SIZE), crc64(record.subarray(0, OFF_CHECKSUM)));
}

/** Checks name and checksum of a whole record (header already checked) and returns it decoded. */
export function completeRecord(bytes: Buffer, h: RecordHeader, seq: number): StreamRecord {
  const nameEnd = RECORD_HEADER_SIZE + h.nameLength;
  const nameBytes = bytes.subarray(RECORD_HEADER_SIZE, nameEnd);
  const fail: Fail = failer(recordLabel(seq, h.type, nameBytes.toString('utf8')));
  const stored = bytes.readBigUInt64BE(OFF_CHECKSUM);
  const computed = recordChecksum(bytes);
  if (stored !== computed) fail(`record checksum mismatch (corrupt): stored ${hex(stored)}, computed ${hex(computed)}`);
  let name: string;
  try {
    name = strictUtf8.decode(nameBytes);
  } catch {
    fail('name is not valid UTF-8');
  }
  checkName(name, fail);
  const { nameLength: _n, payloadLength: _p, ...fields } = h;
  const record: StreamRecord = { ...fields, name, payload: bytes.subarray(nameEnd) };
  recordNumbers.set(record, seq);
  return record;
}

/** Encoder-only: every value must fit its field before it is written. */
function checkWritable(h: RecordHeader, fail: Fail): void {
  for (const { key, size, what } of HEADER_FIELDS) {
    const value = h[key];
    if (CHECKSUM_FIELDS.has(key)) {
      if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) fail(`${what} ${value} is not a u64 bigint`);
    } else {
      const max = size === 8 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * size) - 1;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) fail(`${what} ${value} is not an integer in 0..${max}`);
    }
  }
}

function writeHeader(out: Buffer, h: RecordHeader): void {
  RECORD_MAGIC.copy(out, 0);
  for (const { key, offset, size } of HEADER_FIELDS) {
    const value = h[key];
    if (size === 8) out.writeBigUInt64BE(BigInt(value), offset);
    else out.writeUIntBE(value as number, offset, size);
  }
  out.writeUInt32BE(0, OFF_RESERVED);
}

/**
 * Encodes one record; fields not given are 0 / empty, except the timestamp,
 * which defaults to now (every record carries the send time). Applies the
 * reader's rules, so it never writes a record the reader rejects.
 */
export function encodeRecord(r: Partial<StreamRecord> & { type: RecordType }): Buffer {
  const [prefix, payload] = encodeRecordParts(r);
  return payload.length === 0 ? prefix : Buffer.concat([prefix, payload], prefix.length + payload.length);
}

/**
 * encodeRecord as two buffers: header and name, then the payload itself
 * (not copied; sent after the first, they are the record).
 */
export function encodeRecordParts(r: Partial<StreamRecord> & { type: RecordType }): [prefix: Buffer, payload: Buffer] {
  const name = r.name ?? '';
  const payload = r.payload ?? EMPTY;
  const fail: Fail = failer(recordLabel(undefined, r.type, name));
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.toString('utf8') !== name) fail('name is not well-formed Unicode');
  const h: RecordHeader = {
    type: r.type, flags: r.flags ?? 0, nameLength: nameBytes.length, pageSize: r.pageSize ?? 0, commitSize: r.commitSize ?? 0,
    minTxid: r.minTxid ?? 0, maxTxid: r.maxTxid ?? 0, preApplyChecksum: r.preApplyChecksum ?? 0n, postApplyChecksum: r.postApplyChecksum ?? 0n,
    timestamp: r.timestamp ?? Date.now(), firstPgno: r.firstPgno ?? 0, pageCount: r.pageCount ?? 0, payloadLength: payload.length,
  };
  checkWritable(h, fail);
  checkHeader(h, fail);
  checkName(name, fail);
  if (h.flags & RecordFlag.lz4) checkLz4Prefix(payload, h.pageCount * h.pageSize, fail);
  const prefix = Buffer.allocUnsafe(RECORD_HEADER_SIZE + nameBytes.length);
  writeHeader(prefix, h);
  nameBytes.copy(prefix, RECORD_HEADER_SIZE);
  // The CRC runs on over the payload where it lies: crc64 continues from a seed.
  const checksum = crc64(payload, crc64(prefix.subarray(RECORD_HEADER_SIZE), crc64(prefix.subarray(0, OFF_CHECKSUM))));
  prefix.writeBigUInt64BE(checksum, OFF_CHECKSUM);
  return [prefix, payload];
}

export const heartbeatRecord = (timestamp = Date.now()): Buffer => encodeRecord({ type: RecordType.Heartbeat, timestamp });
export const readyRecord = (timestamp = Date.now()): Buffer => encodeRecord({ type: RecordType.Ready, timestamp });
export const dropRecord = (name: string, timestamp = Date.now()): Buffer => encodeRecord({ type: RecordType.Drop, name, timestamp });

/** Cross-checks the caller's decoded fields against the file's own header and trailer (cheap: no CRC of the body). */
function checkSegmentFile(f: SegmentFile, index: number, fail: Fail): void {
  const header = segmentFileHeader(f.bytes, index, fail);
  const post = header.fileSize === f.bytes.length ? f.bytes.readBigUInt64BE(f.bytes.length - TX_TRAILER_SIZE) : undefined;
  const disagree = [
    header.fileSize !== f.bytes.length && 'length', header.minTxid !== f.minTxid && 'min TXID', header.maxTxid !== f.maxTxid && 'max TXID',
    header.preApplyChecksum !== f.preApplyChecksum && 'pre-apply checksum', post !== f.postApplyChecksum && 'post-apply checksum',
    header.pageSize !== f.pageSize && 'page size', header.commitSize !== f.commitSize && 'commit size',
  ].filter(Boolean);
  if (disagree.length) fail(`file ${index + 1}: the given ${disagree.join(', ')} disagree with its bytes`);
}

function segmentFileHeader(bytes: Buffer, index: number, fail: Fail): ReturnType<typeof decodeTransactionHeader> {
  try {
    return decodeTransactionHeader(bytes);
  } catch (err) {
    if (err instanceof TxFileError) fail(`file ${index + 1}: ${err.message}`);
    throw err;
  }
}

/** Files of one segment must chain (TXIDs and checksums) and share a page size. */
function checkFollows(f: SegmentFile, prev: SegmentFile | undefined, fail: Fail): void {
  if (!prev) return;
  if (f.minTxid !== prev.maxTxid + 1 || f.preApplyChecksum !== prev.postApplyChecksum) {
    fail(`${transactionFileName(f.minTxid, f.maxTxid)} does not follow ${transactionFileName(prev.minTxid, prev.maxTxid)}`);
  }
  if (f.pageSize !== prev.pageSize) fail(`${transactionFileName(f.minTxid, f.maxTxid)} has page size ${f.pageSize}, not ${prev.pageSize}`);
}

function segmentRecord(name: string, first: SegmentFile, last: SegmentFile, payload: Buffer, timestamp: number): Buffer {
  return encodeRecord({
    type: RecordType.WalSegment, name, pageSize: first.pageSize, commitSize: last.commitSize, minTxid: first.minTxid, maxTxid: last.maxTxid,
    preApplyChecksum: first.preApplyChecksum, postApplyChecksum: last.postApplyChecksum, timestamp, payload,
  });
}

/** A WAL_SEGMENT of transaction files as stored in the log; header fields come from the first and last. */
export function walSegmentRecord(name: string, files: SegmentFile[], timestamp = Date.now()): Buffer {
  const fail: Fail = failer(recordLabel(undefined, RecordType.WalSegment, name));
  if (files.length === 0) fail('no transaction files');
  files.forEach((f, i) => {
    checkSegmentFile(f, i, fail);
    checkFollows(f, files[i - 1], fail);
  });
  return segmentRecord(name, files[0]!, files[files.length - 1]!, files.length === 1 ? files[0]!.bytes : Buffer.concat(files.map((f) => f.bytes)), timestamp);
}

/**
 * walSegmentRecord of a run of transaction files lying back to back in
 * `run`, one per entry, as one read of the log gives them: each header is
 * read once, and the run itself is the payload (no copy of each file).
 */
export function walSegmentRecordOfRun(name: string, run: Buffer, entries: readonly { length: number }[], timestamp = Date.now()): Buffer {
  const fail: Fail = failer(recordLabel(undefined, RecordType.WalSegment, name));
  if (entries.length === 0) fail('no transaction files');
  let first: SegmentFile | undefined;
  let prev: SegmentFile | undefined;
  let offset = 0;
  for (const [i, e] of entries.entries()) {
    const bytes = run.subarray(offset, offset + e.length);
    const h = segmentFileHeader(bytes, i, fail);
    if (h.fileSize !== e.length) fail(`file ${i + 1}: its header says ${h.fileSize} bytes, the log holds ${e.length}`);
    const f = segmentFileOf(bytes, h);
    checkFollows(f, prev, fail);
    first ??= f;
    prev = f;
    offset += e.length;
  }
  if (offset !== run.length) fail(`the run holds ${run.length} bytes, its files ${offset}`);
  return segmentRecord(name, first!, prev!, run, timestamp);
}

/** One SNAPSHOT chunk; lz4-compressed when `compress` and that makes it smaller. */
export function snapshotChunkRecord(
  name: string, at: { maxTxid: number; postApplyChecksum: bigint; pageSize: number; commitSize: number },
  firstPgno: number, pages: Buffer, last: boolean, compress: boolean, timestamp = Date.now(),
): Buffer {
  const [prefix, payload] = snapshotChunkRecordParts(name, at, firstPgno, pages, last, compress, timestamp);
  return Buffer.concat([prefix, payload], prefix.length + payload.length);
}

/** snapshotChunkRecord as encodeRecordParts gives it: when sent raw, the payload is `pages` itself. */
export function snapshotChunkRecordParts(
  name: string, at: { maxTxid: number; postApplyChecksum: bigint; pageSize: number; commitSize: number },
  firstPgno: number, pages: Buffer, last: boolean, compress: boolean, timestamp = Date.now(),
): [prefix: Buffer, payload: Buffer] {
  const fail: Fail = failer(recordLabel(undefined, RecordType.Snapshot, name));
  if (!isValidPageSize(at.pageSize)) fail(`page size ${at.pageSize} is not a power of two in 512..65536`);
  if (pages.length % at.pageSize !== 0) fail(`${pages.length} bytes of pages are not whole ${at.pageSize}-byte pages`);
  const pageCount = pages.length / at.pageSize;
  // Checked before compressing, so an oversized chunk fails fast.
  if (pageCount > MAX_CHUNK_PAGES || pages.length > MAX_CHUNK_BYTES) fail(`${pageCount} pages of ${at.pageSize} bytes exceed the chunk limits`);
  let payload = pages;
  let flags = last ? RecordFlag.last : 0;
  if (compress) {
    const packed = compressSync(pages);
    if (packed.length < pages.length) {
      payload = packed;
      flags |= RecordFlag.lz4;
    }
  }
  return encodeRecordParts({
    type: RecordType.Snapshot, flags, name, pageSize: at.pageSize, commitSize: at.commitSize, minTxid: 1, maxTxid: at.maxTxid,
    postApplyChecksum: at.postApplyChecksum, firstPgno, pageCount, timestamp, payload,
  });
}


/** Decodes and verifies the transaction files of a WAL_SEGMENT: each file, the chain, and agreement with the header. */
export function decodeWalSegment(r: StreamRecord): TransactionFile[] {
  return decodeWalSegmentFiles(r).map((f) => f.tx);
}

/** decodeWalSegment, keeping each transaction file's bytes as they came (a replica logs them unchanged). */
export function decodeWalSegmentFiles(r: StreamRecord): { tx: TransactionFile; bytes: Buffer }[] {
  const fail: Fail = failFor(r);
  if (r.type !== RecordType.WalSegment) fail('not a WAL_SEGMENT record');
  const files: { tx: TransactionFile; bytes: Buffer }[] = [];
  try {
    for (let offset = 0; offset < r.payload.length;) {
      const rest = r.payload.subarray(offset);
      const { fileSize } = decodeTransactionHeader(rest, `at payload offset ${offset}`);
      const bytes = rest.subarray(0, fileSize);
      const tx = decodeTransaction(bytes);
      if (files.length > 0) verifyChain(files[files.length - 1]!.tx, tx);
      files.push({ tx, bytes });
      offset += fileSize;
    }
  } catch (err) {
    if (err instanceof TxFileError) fail(err.message);
    throw err;
  }
  checkSegmentAgainstHeader(r, files.map((f) => f.tx), fail);
  return files;
}

function checkSegmentAgainstHeader(r: StreamRecord, files: TransactionFile[], fail: Fail): void {
  const first = files[0];
  const last = files[files.length - 1];
  if (first.minTxid !== r.minTxid) fail(`first transaction starts at TXID ${first.minTxid}, header min TXID is ${r.minTxid}`);
  if (first.preApplyChecksum !== r.preApplyChecksum) {
    fail(`first transaction's pre-apply checksum ${hex(first.preApplyChecksum)} differs from the header's ${hex(r.preApplyChecksum)}`);
  }
  if (last.maxTxid !== r.maxTxid) fail(`last transaction ends at TXID ${last.maxTxid}, header max TXID is ${r.maxTxid}`);
  if (last.postApplyChecksum !== r.postApplyChecksum) {
    fail(`last transaction's post-apply checksum ${hex(last.postApplyChecksum)} differs from the header's ${hex(r.postApplyChecksum)}`);
  }
  if (last.commitSize !== r.commitSize) fail(`last transaction's commit size ${last.commitSize} differs from the header's ${r.commitSize}`);
  const odd = files.find((tx) => tx.pageSize !== r.pageSize);
  if (odd) fail(`${transactionFileName(odd.minTxid, odd.maxTxid)} has page size ${odd.pageSize}, header says ${r.pageSize}`);
}

/** The lz4 length prefix must match before lz4 sees the block: the library allocates whatever it says. */
function checkLz4Prefix(payload: Buffer, expected: number, fail: Fail): void {
  if (payload.length <= 4) fail(`lz4 payload of ${payload.length} bytes is too short`);
  const declared = payload.readUInt32LE(0);
  if (declared !== expected) fail(`lz4 payload declares ${declared} uncompressed bytes, the chunk's pages are ${expected}`);
}

/**
 * The chunk's raw pages (decompressed when lz4), exactly pageCount × pageSize
 * bytes. An lz4 chunk decompresses into the buffer `into` returns for that
 * size: memory the caller reuses, or by default a new buffer.
 */
export function decodeSnapshotChunk(r: StreamRecord, into: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const fail: Fail = failFor(r);
  if (r.type !== RecordType.Snapshot) fail('not a SNAPSHOT record');
  const expected = r.pageCount * r.pageSize;
  if ((r.flags & RecordFlag.lz4) === 0) {
    if (r.payload.length !== expected) fail(`payload of ${r.payload.length} bytes, the chunk's pages are ${expected}`);
    return r.payload;
  }
  checkLz4Prefix(r.payload, expected, fail);
  const pages = into(expected);
  if (!decompressInto(r.payload, pages)) fail('lz4 payload corrupt');
  return pages;
}

/**
 * Follows one snapshot's chunks in order and computes the checksum of each
 * of their pages (one pass over the bytes), so the replica can trust the
 * snapshot before it replaces its database with it, and then keeps the page
 * checksums for the transactions that follow.
 */
export class SnapshotAssembler {
  private readonly first: StreamRecord;
  private readonly lockPage: number;
  /** The highest page a chunk can hold: commitSize, or the page before it when commitSize is the lock page. */
  private readonly lastPage: number;
  private nextPgno = 1;
  private sawLast = false;
  /** The checksum of every page added so far; complete (its size the snapshot's) once finish() passed. */
  readonly checksums: PageChecksums;

  constructor(first: StreamRecord) {
    if (first.type !== RecordType.Snapshot) failFor(first)('a snapshot starts with a SNAPSHOT record');
    this.first = first;
    this.checksums = new PageChecksums(first.pageSize);
    this.lockPage = lockPageNumber(first.pageSize);
    this.lastPage = first.commitSize === this.lockPage ? first.commitSize - 1 : first.commitSize;
  }

  get done(): boolean {
    return this.sawLast;
  }

  /** The database checksum of the pages added so far. */
  get checksum(): bigint {
    return this.checksums.checksum;
  }

  /** Checks the chunk against the ones before it (changing nothing if it fails), then folds its pages into the checksum. */
  add(r: StreamRecord, pages: Buffer): void {
    const fail: Fail = failFor(r);
    const db = printableName(this.first.name);
    if (this.sawLast) fail(`chunk after the LAST chunk of the snapshot of ${db}`);
    if (r.type !== RecordType.Snapshot) fail(`${recordTypeName(r.type)} inside the snapshot of ${db}`);
    if (r.name !== this.first.name) fail(`chunk for another database inside the snapshot of ${db}`);
    for (const field of ['pageSize', 'commitSize', 'maxTxid', 'postApplyChecksum'] as const) {
      if (r[field] !== this.first[field]) fail(`${field} ${r[field]} differs from the snapshot's first chunk (${this.first[field]})`);
    }
    if (r.firstPgno !== this.nextPgno) {
      const why = r.firstPgno === this.lockPage ? ` (chunks skip the lock page ${this.lockPage})` : '';
      fail(`chunk starts at page ${r.firstPgno}, expected ${this.nextPgno}${why}`);
    }
    checkChunkRange(r.firstPgno, r.pageCount, r.pageSize, r.commitSize, fail);
    if (pages.length !== r.pageCount * r.pageSize) fail(`${pages.length} bytes of pages, the chunk has ${r.pageCount} of ${r.pageSize} bytes`);
    const end = r.firstPgno + r.pageCount - 1;
    const last = (r.flags & RecordFlag.last) !== 0;
    if (last && end !== this.lastPage) fail(`LAST chunk ends at page ${end}, the database ends at page ${this.lastPage}`);
    if (!last && end === this.lastPage) fail(`chunk reaches the database's last page ${end} without the LAST flag`);

    this.checksums.setPages(r.firstPgno, pages); // a chunk never holds the lock page
    this.nextPgno = end + 1 === this.lockPage ? end + 2 : end + 1;
    this.sawLast = last;
  }

  /** After the LAST chunk: the pages' checksum must be the snapshot's post-apply checksum. */
  finish(): void {
    const fail: Fail = failFor(this.first);
    if (!this.sawLast) fail(`snapshot ended before its LAST chunk (next page ${this.nextPgno} of ${this.lastPage})`);
    this.checksums.truncate(this.first.commitSize); // a lock page at the end is in the size only
    if (this.checksum !== this.first.postApplyChecksum) {
      fail(`snapshot checksum ${hex(this.checksum)} differs from its post-apply checksum ${hex(this.first.postApplyChecksum)}`);
    }
  }
}
