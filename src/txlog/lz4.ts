// lz4 blocks (with their 4-byte little-endian length in front, as lz4-napi
// writes them) decompressed into memory the caller owns and reuses:
// native/lz4.c on liblz4 (build/Release/litefs_lz4.node). lz4-napi hands
// back a new buffer per block, which for a restore's gigabyte of 1 MiB
// snapshot chunks cost more CPU (fresh memory zeroed and faulted in,
// garbage for V8) than the decompression itself. Where the addon cannot
// load, lz4-napi does the work and the result is copied: slower, the same.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { uncompressSync } from 'lz4-napi';

interface Lz4Addon {
  /** Bytes written to the start of dst; -1 when src is corrupt or declares another length than dst's. */
  decompressInto(src: Uint8Array, dst: Uint8Array): number;
}

let loaded: Lz4Addon | null | undefined;

/** The addon, loaded at first use; null where it cannot load. */
function addon(): Lz4Addon | null {
  if (loaded !== undefined) return loaded;
  // dist/src/txlog/lz4.js -> <repo>/build/Release/litefs_lz4.node
  const file = fileURLToPath(new URL('../../../build/Release/litefs_lz4.node', import.meta.url));
  try {
    loaded = createRequire(import.meta.url)(file) as Lz4Addon;
  } catch {
    loaded = null;
  }
  return loaded;
}

/** Fills all of `dst` from the lz4 block `src`; false when `src` is corrupt or does not decompress to exactly dst's length. */
export function decompressInto(src: Uint8Array, dst: Buffer): boolean {
  const native = addon();
  if (native) return native.decompressInto(src, dst) === dst.length;
  let out: Buffer;
  try {
    out = uncompressSync(src);
  } catch {
    return false;
  }
  return out.length === dst.length && out.copy(dst) === dst.length;
}

/** Which implementation this process uses (for tests). */
export function lz4Implementation(): 'native' | 'lz4-napi' {
  return addon() ? 'native' : 'lz4-napi';
}
