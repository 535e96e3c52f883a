// Checksums of pages and of whole databases, and the position text format.
//
// The CRC is CRC-64/GO-ISO: width 64, polynomial 0x1b (x^64+x^4+x^3+x+1),
// init and xorout all ones, reflected in and out; check("123456789") =
// 0xb90956c775a41001. docs/format.md defines everything here byte by byte.
//
// Two implementations, chosen once at load: the small addon built from
// native/crc64.c (build/Release/litefs_crc.node: carry-less-multiply folding
// where the CPU has PCLMULQDQ, tables otherwise) when it loads, and the
// JavaScript below when it does not (addon not built yet). Both give the same
// results; the JavaScript stays reachable as crc64Js/pageChecksumJs for tests.
//
// Speed, measured on the development machine (Xeon 2.8 GHz, Node 20.20,
// 2 busy cores), best of 7:
//   native (PCLMULQDQ): pageChecksum on 4 KiB pages 5.5-8 GB/s (0.5-0.7 µs
//     a call, mostly call overhead); crc64 on 16 MiB ~7 GB/s;
//     PageChecksums.setPages on 16 MiB ~8 GB/s.
//   JavaScript: pageChecksum on 4 KiB pages ~750-850 MB/s; crc64 on 16 MiB
//     ~820-870 MB/s.
// The addon wins at every size (crc64 of 8 bytes: ~0.1-0.2 µs native,
// ~0.4-0.5 µs in JavaScript, whose bigint conversions alone cost more than
// the call), so there is no size threshold: native whenever it loaded.
//
// The JavaScript: V8 has no fast 64-bit integers (bigint arithmetic
// allocates), so the CRC state is carried as two 32-bit halves, updated
// slicing-by-8 from 32-bit tables, and turned into a bigint once at the end
// (reading words from bytes instead of an Int32Array view: ~250 MB/s;
// a bitwise bigint CRC: ~3 MB/s).

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { isValidPageSize, lockPageNumber } from '../sqlite/dbheader.js';

/** Set in every database checksum, so a real checksum is never 0 (0 means "no database"). */
export const CHECKSUM_FLAG = 1n << 63n;

const U64_MASK = (1n << 64n) - 1n;

// The reflected polynomial is 0xd800000000000000: its low half is zero.
const POLY_REFLECTED_HI = 0xd8000000;

// Eight 256-entry tables, flattened: entry i of table k at [k * 256 + i].
// Table k advances a byte through k further zero bytes, so eight input bytes
// fold into the state with sixteen lookups instead of eight rounds. Int32Array
// rather than Uint32Array: V8 keeps int32 values unboxed, uint32s above 2^31 not.
const TABLE_HI = new Int32Array(8 * 256);
const TABLE_LO = new Int32Array(8 * 256);

for (let i = 0; i < 256; i++) {
  let hi = 0;
  let lo = i;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = (lo >>> 1) | (hi << 31);
    hi >>>= 1;
    if (carry) hi ^= POLY_REFLECTED_HI;
  }
  TABLE_HI[i] = hi;
  TABLE_LO[i] = lo;
}
for (let k = 1; k < 8; k++) {
  for (let i = 0; i < 256; i++) {
    const prevHi = TABLE_HI[(k - 1) * 256 + i];
    const prevLo = TABLE_LO[(k - 1) * 256 + i];
    const idx = prevLo & 0xff;
    TABLE_HI[k * 256 + i] = (prevHi >>> 8) ^ TABLE_HI[idx];
    TABLE_LO[k * 256 + i] = ((prevLo >>> 8) | (prevHi << 24)) ^ TABLE_LO[idx];
  }
}

// Result of update(): returning two numbers through module state avoids
// allocating an array or object per call.
let outHi = 0;
let outLo = 0;

// Reading the input as 32-bit words through an Int32Array view is about three
// times faster than assembling words from bytes; the view reads in host byte
// order, and the CRC wants little-endian words, so big-endian hosts use bytes.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Runs the CRC register (already inverted, as halves) over data[start, end); result in outHi/outLo. */
function update(hi: number, lo: number, data: Uint8Array, start: number, end: number): void {
  const th = TABLE_HI;
  const tl = TABLE_LO;
  let i = start;
  // Single bytes until the input is 4-byte aligned in its ArrayBuffer.
  const alignedStart = LITTLE_ENDIAN_HOST ? Math.min(end, start + ((4 - ((data.byteOffset + start) & 3)) & 3)) : end;
  for (; i < alignedStart; i++) {
    const idx = (lo ^ data[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx];
    hi = (hi >>> 8) ^ th[idx];
  }
  const blockBytes = (end - i) & ~7;
  if (blockBytes > 0) {
    const words = new Int32Array(data.buffer, data.byteOffset + i, blockBytes >> 2);
    for (let w = 0; w < words.length; w += 2) {
      // Eight bytes at once: table k advances a byte through k further bytes.
      const a = lo ^ words[w];
      const b = hi ^ words[w + 1];
      const a0 = 1792 + (a & 0xff), a1 = 1536 + ((a >>> 8) & 0xff), a2 = 1280 + ((a >>> 16) & 0xff), a3 = 1024 + (a >>> 24);
      const b0 = 768 + (b & 0xff), b1 = 512 + ((b >>> 8) & 0xff), b2 = 256 + ((b >>> 16) & 0xff), b3 = b >>> 24;
      hi = th[a0] ^ th[a1] ^ th[a2] ^ th[a3] ^ th[b0] ^ th[b1] ^ th[b2] ^ th[b3];
      lo = tl[a0] ^ tl[a1] ^ tl[a2] ^ tl[a3] ^ tl[b0] ^ tl[b1] ^ tl[b2] ^ tl[b3];
    }
    i += blockBytes;
  }
  for (; i < end; i++) {
    const idx = (lo ^ data[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx];
    hi = (hi >>> 8) ^ th[idx];
  }
  outHi = hi;
  outLo = lo;
}

function toBigInt(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** The functions of native/crc64.c (build/Release/litefs_crc.node). */
interface CrcAddon {
  /** 'pclmul' or 'tables': how the addon computes, chosen by a CPU check at load. */
  readonly method: string;
  crc64(buf: Uint8Array, seed: bigint): bigint;
  /** XOR of the checksums of the whole pages in buf, numbered from firstPgno, without page skipPgno (0: none); no flag bit. */
  pageChecksumsXor(buf: Uint8Array, pageSize: number, firstPgno: number, skipPgno: number): bigint;
  /** Writes the checksum halves of page k of buf (numbered firstPgno + k) to outHi/outLo[outIndex + k]. */
  pageChecksumsInto(buf: Uint8Array, pageSize: number, firstPgno: number, outHi: Uint32Array, outLo: Uint32Array, outIndex: number): void;
}

const CHECK_INPUT = new TextEncoder().encode('123456789');
const CHECK_VALUE = 0xb90956c775a41001n;

/**
 * The addon, or undefined where it cannot load (not built yet, built for
 * another Node.js): checksums are then computed in JavaScript, slower but
 * identical. It is separate from the FUSE addon, so loading it needs no
 * libfuse, mounts nothing and keeps no state.
 */
function loadAddon(): CrcAddon | undefined {
  // dist/src/txlog/checksum.js -> <repo>/build/Release/litefs_crc.node
  const file = fileURLToPath(new URL('../../../build/Release/litefs_crc.node', import.meta.url));
  let loaded: CrcAddon;
  try {
    loaded = createRequire(import.meta.url)(file) as CrcAddon;
  } catch {
    return undefined;
  }
  // A wrong native CRC would corrupt every checksum written: fail loudly.
  if (loaded.crc64(CHECK_INPUT, 0n) !== CHECK_VALUE) {
    throw new Error(`${file} computes a wrong CRC-64/GO-ISO check value; rebuild it (sh etc/build-native.sh)`);
  }
  return loaded;
}

const addon = loadAddon();

/** Which implementation this process uses, fixed at load. */
export function checksumImplementation(): 'native' | 'js' {
  return addon ? 'native' : 'js';
}

function checkSeed(seed: bigint): void {
  if (seed < 0n || seed > U64_MASK) throw new RangeError(`CRC seed ${seed} does not fit in 64 unsigned bits`);
}

/**
 * CRC-64/GO-ISO of data. `seed` is a previous result to continue from, so
 * crc64(b, crc64(a)) === crc64(a ‖ b); the default 0n starts afresh.
 */
export function crc64(data: Uint8Array, seed = 0n): bigint {
  return addon ? addon.crc64(data, seed) : crc64Js(data, seed);
}

/** crc64() in JavaScript whatever checksumImplementation() says: for tests comparing the two. */
export function crc64Js(data: Uint8Array, seed = 0n): bigint {
  checkSeed(seed);
  const inverted = ~seed & U64_MASK;
  update(Number(inverted >> 32n) | 0, Number(inverted & 0xffffffffn) | 0, data, 0, data.length);
  return toBigInt(~outHi, ~outLo);
}

// Big-endian page number, fed to the CRC before the page bytes.
const pgnoBytes = new Uint8Array(4);

/** Computes a page checksum into outHi/outLo (final, not inverted) without allocating. */
function pageChecksumHalves(pgno: number, page: Uint8Array): void {
  pgnoBytes[0] = pgno >>> 24;
  pgnoBytes[1] = pgno >>> 16;
  pgnoBytes[2] = pgno >>> 8;
  pgnoBytes[3] = pgno;
  update(-1, -1, pgnoBytes, 0, 4);
  update(outHi, outLo, page, 0, page.length);
  outHi = ~outHi >>> 0;
  outLo = ~outLo >>> 0;
}

function checkPgno(pgno: number): void {
  if (!Number.isInteger(pgno) || pgno < 1 || pgno > 0xffffffff) {
    throw new RangeError(`page number ${pgno} is not an integer in 1..4294967295`);
  }
}

/** CRC-64/GO-ISO of (pgno as u32 big-endian ‖ page): one page's share of the database checksum. */
export function pageChecksum(pgno: number, page: Uint8Array): bigint {
  checkPgno(pgno);
  return addon ? nativePageChecksum(addon, pgno, page) : pageChecksumHalvesBigInt(pgno, page);
}

/** pageChecksum() in JavaScript whatever checksumImplementation() says: for tests comparing the two. */
export function pageChecksumJs(pgno: number, page: Uint8Array): bigint {
  checkPgno(pgno);
  return pageChecksumHalvesBigInt(pgno, page);
}

function pageChecksumHalvesBigInt(pgno: number, page: Uint8Array): bigint {
  pageChecksumHalves(pgno, page);
  return toBigInt(outHi, outLo);
}

/**
 * XOR of pageChecksum over the whole pages in buf, numbered from firstPgno,
 * leaving out page skipPgno (pass the lock page; 0 for none). No flag bit.
 * One native call for the lot: for database images and snapshot chunks.
 */
export function pageChecksumsXor(buf: Uint8Array, pageSize: number, firstPgno: number, skipPgno: number): bigint {
  if (addon) return addon.pageChecksumsXor(buf, pageSize, firstPgno, skipPgno);
  if (!isValidPageSize(pageSize)) throw new RangeError(`page size ${pageSize} is not a power of two in 512..65536`);
  if (buf.length % pageSize !== 0) {
    throw new RangeError(`buffer length ${buf.length} is not a multiple of the page size ${pageSize}`);
  }
  if (!Number.isInteger(skipPgno) || skipPgno < 0 || skipPgno > 0xffffffff) {
    throw new RangeError(`skipPgno ${skipPgno} is not an integer in 0..4294967295`);
  }
  checkPgno(firstPgno);
  const count = buf.length / pageSize;
  if (count > 0) checkPgno(firstPgno + count - 1);
  let xorHi = 0;
  let xorLo = 0;
  for (let k = 0; k < count; k++) {
    if (firstPgno + k === skipPgno) continue;
    pageChecksumHalves(firstPgno + k, buf.subarray(k * pageSize, (k + 1) * pageSize));
    xorHi ^= outHi;
    xorLo ^= outLo;
  }
  return toBigInt(xorHi, xorLo);
}

/** pgno already checked. One call for pages of a real page size, two (pgno, then the bytes) for odd lengths. */
function nativePageChecksum(native: CrcAddon, pgno: number, page: Uint8Array): bigint {
  const n = page.length;
  if (n >= 512 && n <= 65536 && (n & (n - 1)) === 0) return native.pageChecksumsXor(page, n, pgno, 0);
  pgnoBytes[0] = pgno >>> 24;
  pgnoBytes[1] = pgno >>> 16;
  pgnoBytes[2] = pgno >>> 8;
  pgnoBytes[3] = pgno;
  return native.crc64(page, native.crc64(pgnoBytes, 0n));
}

/**
 * The checksums of every page of one database and their XOR, kept up to date
 * one page at a time, so a commit costs O(pages changed), not O(database).
 */
export class PageChecksums {
  readonly pageSize: number;
  readonly lockPage: number;
  // Checksum of page n at index n - 1; 0 for a page never set (absent pages add nothing).
  private hi: Uint32Array;
  private lo: Uint32Array;
  private count = 0;
  private xorHi = 0;
  private xorLo = 0;

  constructor(pageSize: number) {
    if (!isValidPageSize(pageSize)) {
      throw new RangeError(`page size ${pageSize} is not a power of two in 512..65536`);
    }
    this.pageSize = pageSize;
    this.lockPage = lockPageNumber(pageSize);
    this.hi = new Uint32Array(64);
    this.lo = new Uint32Array(64);
  }

  /** Database size in pages: the highest page set, or the size given to truncate(). */
  get pageCount(): number {
    return this.count;
  }

  /** XOR of all page checksums with CHECKSUM_FLAG set. O(1). */
  get checksum(): bigint {
    return toBigInt(this.xorHi, this.xorLo) | CHECKSUM_FLAG;
  }

  /** The stored checksum of one page (0n if never set, above the end, or the lock page). */
  get(pgno: number): bigint {
    checkPgno(pgno);
    if (pgno > this.count) return 0n;
    return toBigInt(this.hi[pgno - 1], this.lo[pgno - 1]);
  }

  /** Records page pgno's new content, replacing its old contribution. The lock page only extends the size. */
  set(pgno: number, page: Uint8Array): void {
    checkPgno(pgno);
    if (page.length !== this.pageSize) {
      throw new RangeError(`page ${pgno} has ${page.length} bytes, page size is ${this.pageSize}`);
    }
    if (pgno > this.count) {
      this.grow(pgno);
      this.count = pgno;
    }
    if (pgno === this.lockPage) return;
    const i = pgno - 1;
    if (addon) {
      const oldHi = this.hi[i];
      const oldLo = this.lo[i];
      addon.pageChecksumsInto(page, this.pageSize, pgno, this.hi, this.lo, i);
      this.xorHi = (this.xorHi ^ oldHi ^ this.hi[i]) >>> 0;
      this.xorLo = (this.xorLo ^ oldLo ^ this.lo[i]) >>> 0;
      return;
    }
    pageChecksumHalves(pgno, page);
    this.xorHi = (this.xorHi ^ this.hi[i] ^ outHi) >>> 0;
    this.xorLo = (this.xorLo ^ this.lo[i] ^ outLo) >>> 0;
    this.hi[i] = outHi;
    this.lo[i] = outLo;
  }

  /**
   * set() for consecutive pages: buf holds whole pages, numbered from
   * firstPgno. With the addon this is one native call for the lot (a file
   * read in chunks, a snapshot), instead of one per page.
   */
  setPages(firstPgno: number, buf: Uint8Array): void {
    checkPgno(firstPgno);
    const size = this.pageSize;
    if (buf.length % size !== 0) {
      throw new RangeError(`${buf.length} bytes from page ${firstPgno} are not whole pages of ${size} bytes`);
    }
    const count = buf.length / size;
    if (count === 0) return;
    const last = firstPgno + count - 1;
    checkPgno(last);
    if (!addon) {
      for (let k = 0; k < count; k++) this.set(firstPgno + k, buf.subarray(k * size, (k + 1) * size));
      return;
    }
    if (last > this.count) {
      this.grow(last);
      this.count = last;
    }
    const hi = this.hi;
    const lo = this.lo;
    const start = firstPgno - 1;
    const end = start + count;
    // Out with the old checksums, in with the new.
    let xh = this.xorHi;
    let xl = this.xorLo;
    for (let i = start; i < end; i++) {
      xh ^= hi[i];
      xl ^= lo[i];
    }
    addon.pageChecksumsInto(buf, size, firstPgno, hi, lo, start);
    if (this.lockPage >= firstPgno && this.lockPage <= last) {
      hi[this.lockPage - 1] = 0; // as set() leaves it: the lock page adds nothing
      lo[this.lockPage - 1] = 0;
    }
    for (let i = start; i < end; i++) {
      xh ^= hi[i];
      xl ^= lo[i];
    }
    this.xorHi = xh >>> 0;
    this.xorLo = xl >>> 0;
  }

  /** Sets the database size: pages above pageCount are dropped; a larger size adds absent pages. */
  truncate(pageCount: number): void {
    if (!Number.isInteger(pageCount) || pageCount < 0 || pageCount > 0xffffffff) {
      throw new RangeError(`page count ${pageCount} is not an integer in 0..4294967295`);
    }
    if (pageCount > this.count) {
      this.grow(pageCount);
    } else {
      let xh = this.xorHi;
      let xl = this.xorLo;
      for (let i = pageCount; i < this.count; i++) {
        xh ^= this.hi[i];
        xl ^= this.lo[i];
      }
      this.xorHi = xh >>> 0;
      this.xorLo = xl >>> 0;
      this.hi.fill(0, pageCount, this.count);
      this.lo.fill(0, pageCount, this.count);
    }
    this.count = pageCount;
  }

  clone(): PageChecksums {
    const copy = new PageChecksums(this.pageSize);
    copy.hi = this.hi.slice();
    copy.lo = this.lo.slice();
    copy.count = this.count;
    copy.xorHi = this.xorHi;
    copy.xorLo = this.xorLo;
    return copy;
  }

  private grow(pageCount: number): void {
    if (pageCount <= this.hi.length) return;
    let capacity = this.hi.length;
    while (capacity < pageCount) capacity *= 2;
    const hi = new Uint32Array(capacity);
    const lo = new Uint32Array(capacity);
    hi.set(this.hi);
    lo.set(this.lo);
    this.hi = hi;
    this.lo = lo;
  }
}

/** Database checksum of the given pages (any order; the lock page is skipped). */
export function databaseChecksum(pages: Iterable<[number, Uint8Array]>, pageSize: number): bigint {
  if (!isValidPageSize(pageSize)) {
    throw new RangeError(`page size ${pageSize} is not a power of two in 512..65536`);
  }
  const lockPage = lockPageNumber(pageSize);
  if (addon) {
    let xor = 0n;
    for (const [pgno, page] of pages) {
      if (pgno === lockPage) continue;
      checkPgno(pgno);
      xor ^= nativePageChecksum(addon, pgno, page);
    }
    return xor | CHECKSUM_FLAG;
  }
  let xorHi = 0;
  let xorLo = 0;
  for (const [pgno, page] of pages) {
    if (pgno === lockPage) continue;
    checkPgno(pgno);
    pageChecksumHalves(pgno, page);
    xorHi ^= outHi;
    xorLo ^= outLo;
  }
  return toBigInt(xorHi, xorLo) | CHECKSUM_FLAG;
}

/** A 64-bit value as 16 lower-case hex digits. */
export function formatHex64(value: bigint | number): string {
  return value.toString(16).padStart(16, '0');
}

/** Where a database is: the last applied TXID and the checksum after it. */
export interface Position {
  txid: number;
  checksum: bigint;
}

/** Position as text, `%016x/%016x` (TXID, checksum). */
export function formatPosition(txid: number, checksum: bigint): string {
  if (!Number.isSafeInteger(txid) || txid < 0) throw new RangeError(`TXID ${txid} is not a safe non-negative integer`);
  if (checksum < 0n || checksum > U64_MASK) throw new RangeError(`checksum ${checksum} does not fit in 64 bits`);
  return `${formatHex64(txid)}/${formatHex64(checksum)}`;
}

const POSITION_PATTERN = /^([0-9a-f]{16})\/([0-9a-f]{16})$/;

/** Parses `%016x/%016x`; surrounding whitespace (a trailing newline in a file) is allowed. */
export function parsePosition(text: string): Position {
  const match = POSITION_PATTERN.exec(text.trim());
  if (!match) throw new SyntaxError(`position ${JSON.stringify(text)} is not 16 hex digits, "/", 16 hex digits`);
  const txid = Number.parseInt(match[1], 16);
  if (!Number.isSafeInteger(txid)) throw new RangeError(`position ${JSON.stringify(text)}: TXID exceeds 2^53-1`);
  return { txid, checksum: BigInt(`0x${match[2]}`) };
}
