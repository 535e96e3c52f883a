// DirectFileWriter: a replica's incoming snapshot written past the page
// cache (O_DIRECT) on a file system that takes it, through the page cache
// when asked or where a write is refused as misaligned; the file ends with
// exactly the bytes written either way. (A file system refusing O_DIRECT at
// open, as tmpfs did before Linux 6.6, cannot be had here.)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AlignedPool, DirectFileWriter } from '../../src/store/direct-file.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'litefs-direct-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const O_DIRECT = fs.constants.O_DIRECT!;

/** The open flags (from /proc) of this process's descriptors on `file`. */
function openFlags(file: string): number[] {
  const out: number[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target = '';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target !== file) continue;
    const flags = /^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
    if (flags) out.push(Number.parseInt(flags, 8));
  }
  return out;
}

/** Writes `chunks` (each at its offset, in the order given) and returns the file's bytes. */
async function writeAll(writer: DirectFileWriter, chunks: { data: Buffer; offset: number }[], length: number): Promise<Buffer> {
  for (const { data, offset } of chunks) await writer.write(data, offset);
  await writer.finish(length);
  return fs.readFileSync((writer as unknown as { file: string }).file);
}

/** 64 chunks of 64 KiB of random bytes, out of order, with a hole left before the last one. */
function chunks(): { data: Buffer; offset: number }[] {
  const out = Array.from({ length: 64 }, (_, i) => ({ data: crypto.randomBytes(65536), offset: i * 65536 }));
  out[63]!.offset += 65536;
  return [...out.slice(32), ...out.slice(0, 32)];
}

function expected(parts: { data: Buffer; offset: number }[], length: number): Buffer {
  const file = Buffer.alloc(length);
  for (const { data, offset } of parts) data.copy(file, offset);
  return file;
}

test('on a disk file system the file is written with O_DIRECT and holds exactly what was written', async () => {
  const file = path.join(scratch, 'direct.db');
  const writer = DirectFileWriter.create(file);
  assert.equal(writer.bypassesCache, true, 'O_DIRECT on the temp directory\'s file system');
  assert.ok(openFlags(file).every((f) => (f & O_DIRECT) !== 0), 'the descriptor is open with O_DIRECT');
  const parts = chunks();
  // Each chunk's buffer is scribbled over as soon as write() returns: the writer must have copied it.
  const given = parts.map((p) => ({ data: Buffer.from(p.data), offset: p.offset }));
  for (const p of given) {
    await writer.write(p.data, p.offset);
    p.data.fill(0xee);
  }
  const length = 66 * 65536 + 512;
  await writer.finish(length);
  assert.ok(fs.readFileSync(file).equals(expected(parts, length)));
  assert.deepEqual(openFlags(file), [], 'closed');
});

test('without bypassCache the page cache is used, with the same result', async () => {
  const file = path.join(scratch, 'cached.db');
  const cached = DirectFileWriter.create(file, false);
  assert.equal(cached.bypassesCache, false);
  assert.ok(openFlags(file).every((f) => (f & O_DIRECT) === 0));
  const parts = chunks();
  assert.ok((await writeAll(cached, parts, 65 * 65536)).equals(expected(parts, 65 * 65536)));
});

test('a write refused as misaligned goes through the page cache, and so does the rest', async () => {
  const file = path.join(scratch, 'misaligned.db');
  const writer = DirectFileWriter.create(file);
  assert.equal(writer.bypassesCache, true);
  const parts = [
    { data: crypto.randomBytes(4096), offset: 0 },
    { data: crypto.randomBytes(1000), offset: 4096 + 100 }, // not on a block boundary: EINVAL under O_DIRECT
    { data: crypto.randomBytes(4096), offset: 8192 },
  ];
  const bytes = await writeAll(writer, parts, 12288);
  assert.equal(writer.bypassesCache, false);
  assert.ok(bytes.equals(expected(parts, 12288)));
});

/** Bytes of `file` in the page cache (util-linux fincore). */
function cachedBytes(file: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
}

test('with readBack, what was written past the page cache is read back into it; without, it stays out', async () => {
  const parts = chunks();
  const length = 65 * 65536;
  const cold = path.join(scratch, 'cold.db');
  const coldWriter = DirectFileWriter.create(cold);
  for (const { data, offset } of parts) await coldWriter.write(data, offset);
  await coldWriter.finish(length);
  assert.equal(cachedBytes(cold), 0, 'O_DIRECT alone leaves nothing in the page cache');

  const warm = path.join(scratch, 'warm.db');
  const warmWriter = DirectFileWriter.create(warm, true, undefined, { readBack: true });
  assert.equal(warmWriter.bypassesCache, true);
  for (const { data, offset } of parts) await warmWriter.write(data, offset);
  await warmWriter.finish(length);
  assert.equal(cachedBytes(warm), 64 * 65536, 'every page written is in the page cache (the hole is not)');
  assert.ok(fs.readFileSync(warm).equals(expected(parts, length)), 'and the file holds what was written');
});

test('chunks that follow each other in the file and in the pool go to the disk as one write per slab; slabs are reused', async () => {
  const pool = new AlignedPool();
  const file = path.join(scratch, 'runs.db');
  const writer = DirectFileWriter.create(file, true, pool);
  const writes: { offset: number; length: number }[] = [];
  const spied = writer as unknown as { writeOnce: (buf: Buffer, offset: number) => Promise<void> };
  const writeOnce = spied.writeOnce.bind(writer);
  spied.writeOnce = (buf, offset) => {
    writes.push({ offset, length: buf.length });
    return writeOnce(buf, offset);
  };
  const parts: { data: Buffer; offset: number }[] = [];
  const slabs = new Set<ArrayBufferLike>();
  // 20 chunks of 512 KiB in file order, then one out of order: 8 fill a 4 MiB slab.
  for (const [i, offset] of [...Array.from({ length: 20 }, (_, i) => i * 524288), 40 * 524288].entries()) {
    const data = pool.take(0, 524288);
    crypto.randomFillSync(data);
    slabs.add(data.buffer);
    parts.push({ data: Buffer.from(data), offset });
    await writer.write(data, offset);
    assert.equal(writes.length, i < 8 ? 0 : i < 16 ? 1 : i < 20 ? 2 : 3, `chunk ${i + 1}: a run starts for the disk once the next chunk cannot join it`);
  }
  const length = 41 * 524288;
  await writer.finish(length);
  assert.deepEqual(writes, [
    { offset: 0, length: 8 * 524288 },
    { offset: 8 * 524288, length: 8 * 524288 },
    { offset: 16 * 524288, length: 4 * 524288 },
    { offset: 40 * 524288, length: 524288 },
  ]);
  assert.ok(fs.readFileSync(file).equals(expected(parts, length)), 'the file holds every chunk');
  assert.ok(slabs.size <= 4, `slabs written and given back are filled again (${slabs.size} used)`);
  assert.ok(slabs.has(pool.take(0, 524288).buffer), 'after finish the pool hands out a slab it made before');
});
