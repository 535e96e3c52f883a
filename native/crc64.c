/*
 * CRC-64/GO-ISO for src/txlog/checksum.ts (docs/format.md): the whole-file
 * CRC of transaction files and the per-page checksums whose XOR is a
 * database checksum. Width 64, polynomial x^64+x^4+x^3+x+1 (0x1b), reflected,
 * init and xorout all ones; check("123456789") = 0xb90956c775a41001.
 *
 * Built as its own addon (litefs_crc), apart from the FUSE one: checksums
 * need neither libfuse nor a mount, and this module keeps no state after
 * load, so it is safe to load anywhere (tests, tools, worker threads).
 *
 * Two ways to run the same register update:
 *  - slicing-by-8 tables, on any CPU, for short inputs and tails;
 *  - on x86-64 with PCLMULQDQ (checked once at load), carry-less-multiply
 *    folding of 64-byte blocks, several times faster than the tables.
 * Both work on the register r = ~crc, so they can hand over mid-stream.
 */
#include <node_api.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_CLMUL_CODE 1
#endif

/* The polynomial without its x^64 term, bit-reversed (bit 63 = x^0). */
#define POLY_REFLECTED 0xd800000000000000ULL

/* table[k][b]: the register contribution of byte b followed by k zero bytes,
 * so eight input bytes fold in with eight lookups instead of eight rounds. */
static uint64_t table[8][256];

static void init_tables(void) {
  for (int i = 0; i < 256; i++) {
    uint64_t r = (uint64_t)i;
    for (int bit = 0; bit < 8; bit++) r = (r >> 1) ^ ((r & 1) ? POLY_REFLECTED : 0);
    table[0][i] = r;
  }
  for (int k = 1; k < 8; k++)
    for (int i = 0; i < 256; i++)
      table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 0xff];
}

static uint64_t load_le64(const uint8_t *p) {
  uint64_t w;
  memcpy(&w, p, 8); /* no alignment requirement; compiles to one load */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

static uint64_t crc_tables(uint64_t r, const uint8_t *p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w = load_le64(p) ^ r;
    r = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
        table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
        table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
  }
  while (n--) r = table[0][(r ^ *p++) & 0xff] ^ (r >> 8);
  return r;
}

#ifdef HAVE_CLMUL_CODE
/*
 * Folding, in the reflected bit order (bit j of a 16-byte block is the
 * coefficient of x^(127-j), counting from the block's end): a block's low
 * qword L stands for L*x^64 and its high qword H for H. Moving the block
 * D bits further along multiplies by x^D, and modulo P that is
 *   L*(x^(D+64) mod P) + H*(x^D mod P),
 * a 128-bit value to XOR into the block D bits later. A carry-less product
 * of two reflected qwords comes out multiplied by x once more, hence the
 * constants x^(D+63) and x^(D-1). They are computed at load, not written out.
 */
static __m128i fold_by_512; /* D = 512: four blocks apart, the main loop */
static __m128i fold_by_128; /* D = 128: neighbouring blocks */
static int use_clmul;

static uint64_t reflect64(uint64_t v) {
  uint64_t r = 0;
  for (int i = 0; i < 64; i++, v >>= 1) r = (r << 1) | (v & 1);
  return r;
}

/* x^n mod P, reflected. */
static uint64_t xpow_mod(unsigned n) {
  uint64_t v = 1; /* normal order here: bit d is x^d */
  while (n--) v = (v << 1) ^ ((v >> 63) ? 0x1b : 0);
  return reflect64(v);
}

/* Plain SSE2 (baseline on x86-64): runs before we know PCLMULQDQ is there. */
static void init_clmul(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_PCLMUL)) return;
  fold_by_512 = _mm_set_epi64x((long long)xpow_mod(511), (long long)xpow_mod(575));
  fold_by_128 = _mm_set_epi64x((long long)xpow_mod(127), (long long)xpow_mod(191));
  use_clmul = 1;
}

/* x moved along by the distance k is built for (see above). */
__attribute__((target("pclmul,sse2"))) static inline __m128i fold(__m128i x, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* n >= 64. Folds everything but the last n % 16 bytes into one block, whose
 * remainder modulo P the tables then take (a CRC of it from register 0). */
__attribute__((target("pclmul,sse2"))) static uint64_t crc_clmul(uint64_t r, const uint8_t *p, size_t n) {
  const __m128i *q = (const __m128i *)p;
  /* The register enters as an XOR into the first eight bytes. */
  __m128i x0 = _mm_xor_si128(_mm_loadu_si128(q), _mm_cvtsi64_si128((long long)r));
  __m128i x1 = _mm_loadu_si128(q + 1), x2 = _mm_loadu_si128(q + 2), x3 = _mm_loadu_si128(q + 3);
  for (q += 4, n -= 64; n >= 64; q += 4, n -= 64) {
    /* Four independent chains hide the multiply's latency. */
    x0 = _mm_xor_si128(fold(x0, fold_by_512), _mm_loadu_si128(q));
    x1 = _mm_xor_si128(fold(x1, fold_by_512), _mm_loadu_si128(q + 1));
    x2 = _mm_xor_si128(fold(x2, fold_by_512), _mm_loadu_si128(q + 2));
    x3 = _mm_xor_si128(fold(x3, fold_by_512), _mm_loadu_si128(q + 3));
  }
  __m128i x = _mm_xor_si128(fold(x0, fold_by_128), x1);
  x = _mm_xor_si128(fold(x, fold_by_128), x2);
  x = _mm_xor_si128(fold(x, fold_by_128), x3);
  for (; n >= 16; q++, n -= 16) x = _mm_xor_si128(fold(x, fold_by_128), _mm_loadu_si128(q));
  uint8_t last[16];
  _mm_storeu_si128((__m128i *)last, x);
  return crc_tables(crc_tables(0, last, 16), (const uint8_t *)q, n);
}
#endif

/* Advances the register r = ~crc over n bytes. */
static uint64_t crc_update(uint64_t r, const uint8_t *p, size_t n) {
#ifdef HAVE_CLMUL_CODE
  if (use_clmul && n >= 64) return crc_clmul(r, p, n);
#endif
  return crc_tables(r, p, n);
}

/* CRC of (pgno as u32 big-endian ‖ page), as checksum.ts defines it. */
static uint64_t page_checksum(uint32_t pgno, const uint8_t *page, size_t size) {
  const uint8_t be[4] = {(uint8_t)(pgno >> 24), (uint8_t)(pgno >> 16), (uint8_t)(pgno >> 8), (uint8_t)pgno};
  return ~crc_update(crc_update(~(uint64_t)0, be, 4), page, size);
}

/* ---- N-API surface: argument checks, then the loops above. ---- */

/* Each returns 0, or -1 with a JavaScript exception pending. */

static int get_argv(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < want) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: expected %zu arguments, got %zu", usage, want, argc);
    napi_throw_type_error(env, NULL, msg);
    return -1;
  }
  return 0;
}

static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *what, void **data,
                     size_t *length) {
  bool is;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset) != napi_ok || type != want) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be a %s", what, want == napi_uint8_array ? "Uint8Array" : "Uint32Array");
    napi_throw_type_error(env, NULL, msg);
    return -1;
  }
  return 0;
}

/* An integral number in [min, max]. */
static int get_integer(napi_env env, napi_value v, const char *what, double min, double max, uint64_t *out) {
  napi_valuetype t;
  double d;
  char msg[160];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, NULL, msg);
    return -1;
  }
  if (!(d >= min && d <= max) || d != floor(d)) {
    snprintf(msg, sizeof msg, "%s %.17g is not an integer in %.0f..%.0f", what, d, min, max);
    napi_throw_range_error(env, NULL, msg);
    return -1;
  }
  *out = (uint64_t)d;
  return 0;
}

/* The buffer of whole pages and its page size, shared by the page functions.
 * On success *count is the number of pages and firstPgno + count - 1 fits. */
static int get_pages(napi_env env, napi_value *argv, const char *fn, const uint8_t **data, uint64_t *page_size,
                     uint64_t *first, size_t *count) {
  size_t length;
  char msg[200];
  if (get_typed(env, argv[0], napi_uint8_array, "buf", (void **)data, &length) ||
      get_integer(env, argv[1], "pageSize", 0, 4294967295.0, page_size) ||
      get_integer(env, argv[2], "firstPgno", 1, 4294967295.0, first))
    return -1;
  if (*page_size < 512 || *page_size > 65536 || (*page_size & (*page_size - 1))) {
    snprintf(msg, sizeof msg, "%s: page size %llu is not a power of two in 512..65536", fn,
             (unsigned long long)*page_size);
    napi_throw_range_error(env, NULL, msg);
    return -1;
  }
  if (length % *page_size) {
    snprintf(msg, sizeof msg, "%s: buffer length %zu is not a multiple of the page size %llu", fn, length,
             (unsigned long long)*page_size);
    napi_throw_range_error(env, NULL, msg);
    return -1;
  }
  *count = length / *page_size;
  if (*count && *first + *count - 1 > 4294967295.0) {
    snprintf(msg, sizeof msg, "%s: pages %llu.. run past page number 4294967295", fn, (unsigned long long)*first);
    napi_throw_range_error(env, NULL, msg);
    return -1;
  }
  return 0;
}

/* crc64(buf: Uint8Array, seed: bigint): bigint. seed is a previous result to
 * continue from (0n to start afresh). */
static napi_value js_crc64(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  void *data;
  size_t length;
  uint64_t seed;
  bool lossless;
  if (get_argv(env, info, 2, argv, "crc64(buf, seed)") ||
      get_typed(env, argv[0], napi_uint8_array, "buf", &data, &length))
    return NULL;
  if (napi_get_value_bigint_uint64(env, argv[1], &seed, &lossless) != napi_ok) {
    napi_throw_type_error(env, NULL, "seed must be a bigint");
    return NULL;
  }
  if (!lossless) { /* negative, or wider than 64 bits */
    napi_throw_range_error(env, NULL, "seed does not fit in 64 unsigned bits");
    return NULL;
  }
  uint64_t crc = length ? ~crc_update(~seed, data, length) : seed;
  napi_create_bigint_uint64(env, crc, &out);
  return out;
}

/* pageChecksumsXor(buf, pageSize, firstPgno, skipPgno): bigint. XOR of the
 * page checksums of the pages in buf, numbered from firstPgno, leaving out
 * page skipPgno (the lock page; 0 for none). The caller adds the flag bit. */
static napi_value js_page_checksums_xor(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  const uint8_t *data;
  uint64_t page_size, first, skip, x = 0;
  size_t count;
  if (get_argv(env, info, 4, argv, "pageChecksumsXor(buf, pageSize, firstPgno, skipPgno)") ||
      get_pages(env, argv, "pageChecksumsXor", &data, &page_size, &first, &count) ||
      get_integer(env, argv[3], "skipPgno", 0, 4294967295.0, &skip))
    return NULL;
  for (size_t i = 0; i < count; i++)
    if (first + i != skip) x ^= page_checksum((uint32_t)(first + i), data + i * page_size, page_size);
  napi_create_bigint_uint64(env, x, &out);
  return out;
}

/* pageChecksumsInto(buf, pageSize, firstPgno, outHi, outLo, outIndex):
 * writes page k's checksum halves to outHi/outLo[outIndex + k]. Skips
 * nothing: the caller knows which entries it keeps. */
static napi_value js_page_checksums_into(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  const uint8_t *data;
  uint32_t *hi, *lo;
  size_t count, hi_len, lo_len;
  uint64_t page_size, first, index;
  if (get_argv(env, info, 6, argv, "pageChecksumsInto(buf, pageSize, firstPgno, outHi, outLo, outIndex)") ||
      get_pages(env, argv, "pageChecksumsInto", &data, &page_size, &first, &count) ||
      get_typed(env, argv[3], napi_uint32_array, "outHi", (void **)&hi, &hi_len) ||
      get_typed(env, argv[4], napi_uint32_array, "outLo", (void **)&lo, &lo_len) ||
      get_integer(env, argv[5], "outIndex", 0, 9007199254740991.0, &index))
    return NULL;
  if (index + count > hi_len || index + count > lo_len) {
    char msg[200];
    snprintf(msg, sizeof msg, "pageChecksumsInto: %zu checksums from index %llu do not fit in outHi (%zu) and outLo (%zu)",
             count, (unsigned long long)index, hi_len, lo_len);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  for (size_t i = 0; i < count; i++) {
    uint64_t c = page_checksum((uint32_t)(first + i), data + i * page_size, page_size);
    hi[index + i] = (uint32_t)(c >> 32);
    lo[index + i] = (uint32_t)c;
  }
  return NULL; /* undefined */
}

static void init_once(void) {
  init_tables();
#ifdef HAVE_CLMUL_CODE
  init_clmul();
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  /* Once per process: worker threads may load the module concurrently. */
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_once);
  napi_value impl;
#ifdef HAVE_CLMUL_CODE
  napi_create_string_utf8(env, use_clmul ? "pclmul" : "tables", NAPI_AUTO_LENGTH, &impl);
#else
  napi_create_string_utf8(env, "tables", NAPI_AUTO_LENGTH, &impl);
#endif
  napi_property_descriptor props[] = {
      {"crc64", NULL, js_crc64, NULL, NULL, NULL, napi_default, NULL},
      {"pageChecksumsXor", NULL, js_page_checksums_xor, NULL, NULL, NULL, napi_default, NULL},
      {"pageChecksumsInto", NULL, js_page_checksums_into, NULL, NULL, NULL, napi_default, NULL},
      {"method", NULL, NULL, NULL, NULL, impl, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
