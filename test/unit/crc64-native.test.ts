// Checks the native CRC-64/GO-ISO (native/crc64.c, build/Release/litefs_crc.node)
// against the JavaScript one in src/txlog/checksum.ts: random data of every
// short length and alignment, large unaligned inputs (the PCLMULQDQ folding
// path and its tails), seed continuation, page checksums and their XOR, the
// bulk PageChecksums.setPages, and argument errors.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import {
  CHECKSUM_FLAG, checksumImplementation, crc64, crc64Js, databaseChecksum, PageChecksums, pageChecksum, pageChecksumJs,
  pageChecksumsXor,
} from '../../src/txlog/checksum.js';
import { lockPageNumber } from '../../src/sqlite/dbheader.js';
import { rng, randomBytes } from '../support/random.js';

/**
 * The addon's raw functions, loaded directly to reach its argument checks and
 * skipPgno; untyped arguments, so the tests can pass wrong ones:
 * crc64(buf, seed), pageChecksumsXor(buf, pageSize, firstPgno, skipPgno),
 * pageChecksumsInto(buf, pageSize, firstPgno, outHi, outLo, outIndex).
 */
interface CrcAddon {
  method: string;
  crc64(...args: unknown[]): bigint;
  pageChecksumsXor(...args: unknown[]): bigint;
  pageChecksumsInto(...args: unknown[]): void;
}

const addon = createRequire(import.meta.url)(
  fileURLToPath(new URL('../../../build/Release/litefs_crc.node', import.meta.url)),
) as CrcAddon;

function randomSeed(random: () => number): bigint {
  return (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
}

/** XOR of pageChecksumJs over the pages of buf numbered from first, without skip. */
function xorJs(buf: Uint8Array, pageSize: number, first: number, skip = 0): bigint {
  let x = 0n;
  for (let k = 0; k * pageSize < buf.length; k++) {
    if (first + k !== skip) x ^= pageChecksumJs(first + k, buf.subarray(k * pageSize, (k + 1) * pageSize));
  }
  return x;
}

describe('native crc64', () => {
  test('the addon is loaded and used', (t) => {
    assert.equal(checksumImplementation(), 'native');
    t.diagnostic(`native method: ${addon.method}`);
  });

  test('check value of "123456789" is 0xb90956c775a41001', () => {
    assert.equal(addon.crc64(Buffer.from('123456789'), 0n), 0xb90956c775a41001n);
    assert.equal(crc64(Buffer.from('123456789')), 0xb90956c775a41001n);
    assert.equal(crc64Js(Buffer.from('123456789')), 0xb90956c775a41001n);
    assert.equal(crc64(new Uint8Array(0)), 0n);
    assert.equal(crc64(new Uint8Array(0), 0x1234n), 0x1234n);
  });

  test('equals the JavaScript CRC at lengths 0..100, every alignment, with and without a seed', () => {
    const random = rng(11);
    const backing = randomBytes(random, 128);
    for (let length = 0; length <= 100; length++) {
      for (let offset = 0; offset < 8; offset++) {
        const data = backing.subarray(offset, offset + length);
        const seed = randomSeed(random);
        assert.equal(crc64(data), crc64Js(data), `length ${length} offset ${offset}`);
        assert.equal(crc64(data, seed), crc64Js(data, seed), `length ${length} offset ${offset} seed ${seed}`);
      }
    }
  });

  test('equals the JavaScript CRC on large unaligned inputs', () => {
    const random = rng(12);
    const backing = randomBytes(random, (1 << 20) + 300);
    const lengths = [127, 128, 129, 255, 1000, 4096, 4111, 65536 + 13, 1 << 20];
    for (const length of lengths) {
      for (const offset of [0, 1, 3, 8, 13, 200]) {
        const data = new Uint8Array(backing.buffer, backing.byteOffset + offset, length);
        const seed = randomSeed(random);
        assert.equal(crc64(data, seed), crc64Js(data, seed), `length ${length} offset ${offset}`);
      }
    }
    // Extreme seeds.
    const data = backing.subarray(5, 5000);
    for (const seed of [0n, 1n, 0xffffffffffffffffn, 0x8000000000000000n]) assert.equal(crc64(data, seed), crc64Js(data, seed));
  });

  test('a seed continues a previous CRC, across any cut', () => {
    const data = randomBytes(rng(13), 5000);
    const whole = crc64Js(data);
    for (const cut of [0, 1, 7, 8, 15, 16, 63, 64, 65, 100, 2500, 4937, 4999, 5000]) {
      assert.equal(crc64(data.subarray(cut), crc64(data.subarray(0, cut))), whole, `cut ${cut}`);
    }
  });

  test('a zero-filled and an all-ones megabyte', () => {
    for (const fill of [0, 0xff]) {
      const data = Buffer.alloc((1 << 20) + 5, fill);
      assert.equal(crc64(data), crc64Js(data));
    }
  });
});

describe('native page checksums', () => {
  test('pageChecksum equals the JavaScript one for every page size, odd lengths and extreme page numbers', () => {
    const random = rng(21);
    for (let pageSize = 512; pageSize <= 65536; pageSize *= 2) {
      const page = randomBytes(random, pageSize + 3).subarray(3);
      for (const pgno of [1, 2, 1000, 0x7fffffff, 0xffffffff]) {
        assert.equal(pageChecksum(pgno, page), pageChecksumJs(pgno, page), `page size ${pageSize} pgno ${pgno}`);
      }
    }
    for (const length of [0, 1, 100, 513, 4095, 4097]) {
      const page = randomBytes(random, length);
      assert.equal(pageChecksum(77, page), pageChecksumJs(77, page), `length ${length}`);
    }
    assert.equal(pageChecksum(7, new Uint8Array(4096).map((_, i) => (i * 7 + (i >> 8)) & 0xff)), 0x01c6090b6c8063edn);
    assert.throws(() => pageChecksum(0, new Uint8Array(512)), RangeError);
  });

  test('pageChecksumsXor equals the XOR of the JavaScript page checksums, with and without a skipped page', () => {
    const random = rng(22);
    for (const pageSize of [512, 4096, 65536]) {
      const count = pageSize === 65536 ? 5 : 17;
      const buf = randomBytes(random, count * pageSize + 1).subarray(1);
      for (const first of [1, 3, 16380]) {
        assert.equal(addon.pageChecksumsXor(buf, pageSize, first, 0), xorJs(buf, pageSize, first));
        for (const skip of [first, first + 2, first + count - 1, first + count, first > 1 ? first - 1 : 999999]) {
          assert.equal(addon.pageChecksumsXor(buf, pageSize, first, skip), xorJs(buf, pageSize, first, skip), `skip ${skip}`);
        }
      }
    }
    // The exported wrapper is the same function.
    const image = randomBytes(random, 9 * 4096);
    assert.equal(pageChecksumsXor(image, 4096, 1, 4), xorJs(image, 4096, 1, 4));
    // The last pages a 32-bit page number reaches.
    const buf = randomBytes(random, 3 * 512);
    assert.equal(addon.pageChecksumsXor(buf, 512, 0xfffffffd, 0xfffffffe), xorJs(buf, 512, 0xfffffffd, 0xfffffffe));
    assert.equal(addon.pageChecksumsXor(new Uint8Array(0), 512, 1, 0), 0n);
  });

  test('pageChecksumsInto writes each page checksum at outIndex and nothing else', () => {
    const pageSize = 1024;
    const buf = randomBytes(rng(23), 6 * pageSize);
    const hi = new Uint32Array(10).fill(0xdeadbeef);
    const lo = new Uint32Array(10).fill(0xdeadbeef);
    addon.pageChecksumsInto(buf, pageSize, 40, hi, lo, 3);
    for (let i = 0; i < 10; i++) {
      if (i < 3 || i >= 9) {
        assert.equal(hi[i], 0xdeadbeef);
        assert.equal(lo[i], 0xdeadbeef);
      } else {
        const expected = pageChecksumJs(40 + i - 3, buf.subarray((i - 3) * pageSize, (i - 2) * pageSize));
        assert.equal((BigInt(hi[i]) << 32n) | BigInt(lo[i]), expected, `index ${i}`);
      }
    }
  });

  test('databaseChecksum and PageChecksums.set agree with the JavaScript page checksums', () => {
    const random = rng(24);
    const pageSize = 4096;
    const pages: [number, Uint8Array][] = [];
    for (let pgno = 1; pgno <= 40; pgno++) pages.push([pgno, randomBytes(random, pageSize)]);
    let expected = 0n;
    for (const [pgno, page] of pages) expected ^= pageChecksumJs(pgno, page);
    assert.equal(databaseChecksum(pages, pageSize), expected | CHECKSUM_FLAG);
    const state = new PageChecksums(pageSize);
    for (const [pgno, page] of [...pages].reverse()) state.set(pgno, page);
    assert.equal(state.checksum, expected | CHECKSUM_FLAG);
    for (const [pgno, page] of pages) assert.equal(state.get(pgno), pageChecksumJs(pgno, page));
  });

  test('PageChecksums.setPages equals set() page by page, across the lock page and over old pages', () => {
    const random = rng(25);
    const pageSize = 65536;
    const lockPage = lockPageNumber(pageSize); // 16385
    const bulk = new PageChecksums(pageSize);
    const single = new PageChecksums(pageSize);
    const apply = (first: number, buf: Buffer): void => {
      bulk.setPages(first, buf);
      for (let k = 0; k * pageSize < buf.length; k++) single.set(first + k, buf.subarray(k * pageSize, (k + 1) * pageSize));
      assert.equal(bulk.checksum, single.checksum, `pages ${first}..`);
      assert.equal(bulk.pageCount, single.pageCount);
    };
    apply(1, randomBytes(random, 4 * pageSize));
    apply(3, randomBytes(random, 3 * pageSize)); // overwrites 3 and 4, extends to 5
    apply(lockPage - 2, randomBytes(random, 5 * pageSize)); // spans the lock page
    apply(lockPage, randomBytes(random, pageSize)); // only the lock page
    apply(2, Buffer.alloc(0));
    assert.equal(bulk.get(lockPage), 0n);
    for (const pgno of [1, 2, 3, 4, 5, 6, lockPage - 2, lockPage - 1, lockPage, lockPage + 1, lockPage + 2]) {
      assert.equal(bulk.get(pgno), single.get(pgno), `page ${pgno}`);
    }
    bulk.truncate(4);
    single.truncate(4);
    assert.equal(bulk.checksum, single.checksum);
    assert.throws(() => bulk.setPages(1, Buffer.alloc(pageSize + 1)), RangeError);
    assert.throws(() => bulk.setPages(0, Buffer.alloc(pageSize)), RangeError);
    assert.throws(() => bulk.setPages(0xffffffff, Buffer.alloc(2 * pageSize)), RangeError);
  });
});

describe('native argument errors', () => {
  const page = new Uint8Array(512);

  test('crc64: buffer must be a Uint8Array, seed a 64-bit unsigned bigint', () => {
    assert.throws(() => addon.crc64('abc', 0n), { name: 'TypeError', message: 'buf must be a Uint8Array' });
    assert.throws(() => addon.crc64(new Uint16Array(4), 0n), TypeError);
    assert.throws(() => addon.crc64(new DataView(new ArrayBuffer(4)), 0n), TypeError);
    assert.throws(() => addon.crc64(page, 0), { name: 'TypeError', message: 'seed must be a bigint' });
    assert.throws(() => addon.crc64(page), { name: 'TypeError', message: /expected 2 arguments, got 1/ });
    assert.throws(() => addon.crc64(page, -1n), { name: 'RangeError', message: /64 unsigned bits/ });
    assert.throws(() => addon.crc64(page, 1n << 64n), RangeError);
    // The public function checks the same way whichever implementation runs.
    assert.throws(() => crc64(page, -1n), RangeError);
    assert.throws(() => crc64Js(page, -1n), RangeError);
    assert.throws(() => crc64Js(page, 1n << 64n), RangeError);
  });

  test('page functions: page size, whole pages, page numbers, output arrays', () => {
    for (const pageSize of [256, 1000, 131072, 0, -512]) {
      assert.throws(() => addon.pageChecksumsXor(new Uint8Array(4096), pageSize, 1, 0), RangeError, `page size ${pageSize}`);
    }
    assert.throws(() => addon.pageChecksumsXor(page, 512, 1.5, 0), { name: 'RangeError', message: 'firstPgno 1.5 is not an integer in 1..4294967295' });
    assert.throws(() => addon.pageChecksumsXor(new Uint8Array(4096), 1000, 1, 0), {
      name: 'RangeError', message: 'pageChecksumsXor: page size 1000 is not a power of two in 512..65536',
    });
    assert.throws(() => addon.pageChecksumsXor(new Uint8Array(1000), 512, 1, 0), {
      name: 'RangeError', message: 'pageChecksumsXor: buffer length 1000 is not a multiple of the page size 512',
    });
    assert.throws(() => addon.pageChecksumsXor(page, '512', 1, 0), { name: 'TypeError', message: 'pageSize must be a number' });
    assert.throws(() => addon.pageChecksumsXor(page, 512, 0, 0), RangeError);
    assert.throws(() => addon.pageChecksumsXor(page, 512, NaN, 0), RangeError);
    assert.throws(() => addon.pageChecksumsXor(page, 512, 1, -1), RangeError);
    assert.throws(() => addon.pageChecksumsXor(page, 512, 2 ** 32, 0), RangeError);
    assert.throws(() => addon.pageChecksumsXor(new Uint8Array(1024), 512, 0xffffffff, 0), {
      name: 'RangeError', message: /run past page number 4294967295/,
    });
    assert.throws(() => addon.pageChecksumsXor(page, 512, 1), TypeError);
    const hi = new Uint32Array(2);
    const lo = new Uint32Array(2);
    assert.throws(() => addon.pageChecksumsInto(page, 512, 1, new Int32Array(2), lo, 0), {
      name: 'TypeError', message: 'outHi must be a Uint32Array',
    });
    assert.throws(() => addon.pageChecksumsInto(page, 512, 1, hi, [0, 0], 0), TypeError);
    assert.throws(() => addon.pageChecksumsInto(new Uint8Array(1536), 512, 1, hi, lo, 0), { name: 'RangeError', message: /do not fit/ });
    assert.throws(() => addon.pageChecksumsInto(page, 512, 1, hi, new Uint32Array(1), 1), RangeError);
    assert.throws(() => addon.pageChecksumsInto(page, 512, 1, hi, lo, -1), RangeError);
    addon.pageChecksumsInto(page, 512, 1, hi, lo, 1);
    assert.equal((BigInt(hi[1]) << 32n) | BigInt(lo[1]), pageChecksumJs(1, page));
  });
});
