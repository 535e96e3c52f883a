/*
 * lz4 block decompression into memory the caller owns (liblz4), for
 * snapshot chunks (docs/protocol.md: an lz4 block with its uncompressed
 * length in front, 4 bytes little-endian, as lz4-napi writes it).
 *
 * lz4-napi returns a new buffer for every block: for a restore's thousand
 * 1 MiB chunks that is a gigabyte of fresh memory to zero and fault in,
 * and garbage for V8 to collect. Decompressing into a buffer the caller
 * reuses costs only the decompression.
 *
 * Built as its own addon (litefs_lz4): no state, safe to load anywhere.
 */
#include <node_api.h>
#include <lz4.h>
#include <stdint.h>

#define CHECK(call)                                                                  \
  do {                                                                               \
    if ((call) != napi_ok) {                                                         \
      napi_throw_error(env, NULL, "lz4: " #call " failed");                           \
      return NULL;                                                                   \
    }                                                                                \
  } while (0)

static int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *length) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return -1;
  if (napi_get_typedarray_info(env, v, &type, length, (void **)data, &buffer, &offset) != napi_ok) return -1;
  return type == napi_uint8_array ? 0 : -1;
}

/*
 * decompressInto(src, dst): the number of bytes the block decompressed to,
 * written at the start of dst; -1 when the block is corrupt, shorter than
 * its length prefix, or says a length other than dst's.
 */
static napi_value decompress_into(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  uint8_t *src, *dst;
  size_t src_len, dst_len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || bytes_of(env, argv[0], &src, &src_len) || bytes_of(env, argv[1], &dst, &dst_len)) {
    napi_throw_type_error(env, NULL, "lz4: decompressInto(src, dst) takes two Uint8Arrays");
    return NULL;
  }
  int n = -1;
  if (src_len >= 4 && dst_len <= INT32_MAX && src_len - 4 <= INT32_MAX) {
    uint32_t declared = (uint32_t)src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24;
    if (declared == dst_len) {
      n = LZ4_decompress_safe((const char *)src + 4, (char *)dst, (int)(src_len - 4), (int)dst_len);
      if (n != (int)dst_len) n = -1;
    }
  }
  CHECK(napi_create_int32(env, n, &result));
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  CHECK(napi_create_function(env, "decompressInto", NAPI_AUTO_LENGTH, decompress_into, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "decompressInto", fn));
  return exports;
}
