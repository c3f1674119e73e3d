// Native parts of the flist block codec, written from the specifications: XXTEA (flist-format
// spec §8.3, the "length-word" variant: the plaintext is zero-padded to whole words and one word
// holding its byte length is appended before encryption) and the Snappy raw-format decoder
// (google/snappy format_description.txt; decoding is deterministic, so any correct decoder gives
// the same bytes; compression stays with the snappy package so block ids do not change).
// The JS in xxtea.ts / the snappy package are the fallback and the references this is tested
// against. Buffers are allocated by the caller in JS: this file only transforms bytes.
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#define DELTA 0x9e3779b9u
#define MX (((z >> 5) ^ (y << 2)) + ((y >> 3) ^ (z << 4))) ^ ((sum ^ y) + (k[(p & 3) ^ e] ^ z))

// Words are little-endian in the format; memcpy keeps unaligned buffers legal and compiles to a
// plain load/store on x86.
static inline uint32_t ld(const uint8_t *b, size_t i) {
  uint32_t w;
  memcpy(&w, b + 4 * i, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap32(w);
#endif
  return w;
}

static inline void st(uint8_t *b, size_t i, uint32_t w) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap32(w);
#endif
  memcpy(b + 4 * i, &w, 4);
}

static void key_words(const uint8_t *key, size_t len, uint32_t k[4]) {
  // Binary keys: zero-padded to 16 bytes, never truncated at a NUL byte.
  uint8_t kb[16] = {0};
  memcpy(kb, key, len < 16 ? len : 16);
  for (int i = 0; i < 4; i++) k[i] = ld(kb, i);
}

static void encrypt_words(uint8_t *v, size_t n, const uint32_t k[4]) {
  uint32_t rounds = 6 + 52 / n, sum = 0, z = ld(v, n - 1), y, e;
  size_t p;
  while (rounds-- > 0) {
    sum += DELTA;
    e = (sum >> 2) & 3;
    for (p = 0; p < n - 1; p++) {
      y = ld(v, p + 1);
      z = ld(v, p) + (MX);
      st(v, p, z);
    }
    y = ld(v, 0);
    z = ld(v, n - 1) + (MX);
    st(v, n - 1, z);
  }
}

static void decrypt_words(uint8_t *v, size_t n, const uint32_t k[4]) {
  uint32_t rounds = 6 + 52 / n, sum = rounds * DELTA, y = ld(v, 0), z, e;
  size_t p;
  while (sum != 0) {
    e = (sum >> 2) & 3;
    for (p = n - 1; p > 0; p--) {
      z = ld(v, p - 1);
      y = ld(v, p) - (MX);
      st(v, p, y);
    }
    z = ld(v, n - 1);
    y = ld(v, 0) - (MX);
    st(v, 0, y);
    sum -= DELTA;
  }
}

static int bytes_arg(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  void *d;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &t, len, &d, &ab, &off) != napi_ok || t != napi_uint8_array) return 0;
  *data = d;
  return 1;
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value num(napi_env env, double x) {
  napi_value r;
  napi_create_double(env, x, &r);
  return r;
}

// encrypt(plain, key, out): out.length must be 4*ceil(plain.length/4)+4; returns out.length.
static napi_value js_encrypt(napi_env env, napi_callback_info info) {
  size_t argc = 3, pl, kl, ol;
  napi_value argv[3];
  uint8_t *plain, *key, *out;
  uint32_t k[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !bytes_arg(env, argv[0], &plain, &pl) || !bytes_arg(env, argv[1], &key, &kl) ||
      !bytes_arg(env, argv[2], &out, &ol))
    return fail(env, "xxtea encrypt: expected (Uint8Array plain, Uint8Array key, Uint8Array out)");
  if (pl == 0 || pl > 0xffffffffu) return fail(env, "xxtea encrypt: input must be 1 .. 2^32-1 bytes");
  size_t n = (pl + 3) / 4 + 1;
  if (ol != 4 * n) return fail(env, "xxtea encrypt: output buffer has the wrong length");
  if (out != plain) memmove(out, plain, pl);
  memset(out + pl, 0, 4 * n - pl);
  st(out, n - 1, (uint32_t)pl);
  key_words(key, kl, k);
  encrypt_words(out, n, k);
  return num(env, (double)ol);
}

// decrypt(cipher, key, out): out.length must equal cipher.length; returns the plaintext length,
// or -1 when the length word is inconsistent (wrong key or corrupt data).
static napi_value js_decrypt(napi_env env, napi_callback_info info) {
  size_t argc = 3, cl, kl, ol;
  napi_value argv[3];
  uint8_t *cipher, *key, *out;
  uint32_t k[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !bytes_arg(env, argv[0], &cipher, &cl) || !bytes_arg(env, argv[1], &key, &kl) ||
      !bytes_arg(env, argv[2], &out, &ol))
    return fail(env, "xxtea decrypt: expected (Uint8Array cipher, Uint8Array key, Uint8Array out)");
  if (ol != cl) return fail(env, "xxtea decrypt: output buffer has the wrong length");
  if (cl < 8 || cl % 4 != 0) return num(env, -1);
  size_t n = cl / 4;
  if (out != cipher) memmove(out, cipher, cl);
  key_words(key, kl, k);
  decrypt_words(out, n, k);
  uint32_t len = ld(out, n - 1);
  size_t max = 4 * (n - 1);
  if ((size_t)len + 3 < max || len > max) return num(env, -1);
  return num(env, (double)len);
}

// Snappy raw format: a varint of the uncompressed length, then literals and back-references.
// Returns the declared length, or -1 when the varint is malformed or over 2^32-1.
static int64_t snappy_length(const uint8_t *src, size_t n, size_t *hdr) {
  uint64_t len = 0;
  for (size_t i = 0; i < n && i < 5; i++) {
    len |= (uint64_t)(src[i] & 0x7f) << (7 * i);
    if (!(src[i] & 0x80)) {
      *hdr = i + 1;
      return len > 0xffffffffu ? -1 : (int64_t)len;
    }
  }
  return -1;
}

// Decodes src into exactly out_len bytes; 0 on success, -1 on any inconsistency (never reads or
// writes out of bounds).
static int snappy_decode(const uint8_t *src, size_t n, size_t i, uint8_t *out, size_t out_len) {
  size_t o = 0;
  while (i < n) {
    uint8_t tag = src[i++];
    size_t len, off;
    switch (tag & 3) {
    case 0:
      len = tag >> 2;
      if (len >= 60) {
        size_t extra = len - 59;
        if (n - i < extra) return -1;
        len = 0;
        for (size_t b = 0; b < extra; b++) len |= (size_t)src[i + b] << (8 * b);
        i += extra;
      }
      len += 1;
      if (n - i < len || out_len - o < len) return -1;
      if (len <= 16 && n - i >= 16 && out_len - o >= 16) {
        memcpy(out + o, src + i, 16); // fixed size: one unaligned load/store, no libc call
      } else {
        memcpy(out + o, src + i, len);
      }
      i += len;
      o += len;
      continue;
    case 1:
      if (n - i < 1) return -1;
      len = 4 + ((tag >> 2) & 7);
      off = ((size_t)(tag >> 5) << 8) | src[i];
      i += 1;
      break;
    case 2:
      if (n - i < 2) return -1;
      len = 1 + (tag >> 2);
      off = (size_t)src[i] | (size_t)src[i + 1] << 8;
      i += 2;
      break;
    default:
      if (n - i < 4) return -1;
      len = 1 + (tag >> 2);
      off = (size_t)src[i] | (size_t)src[i + 1] << 8 | (size_t)src[i + 2] << 16 | (size_t)src[i + 3] << 24;
      i += 4;
      break;
    }
    if (off == 0 || off > o || out_len - o < len) return -1;
    if (off >= 8 && out_len - o >= len + 8) {
      // 8 bytes at a time, possibly writing up to 7 bytes past `len` (inside the buffer, and
      // overwritten by what follows); with off >= 8 each 8-byte read precedes what it writes.
      uint8_t *d = out + o;
      const uint8_t *from = d - off;
      for (size_t b = 0; b < len; b += 8) memcpy(d + b, from + b, 8);
    } else if (off >= len) {
      memcpy(out + o, out + o - off, len);
    } else {
      // overlapping copy: repeats the last `off` bytes, so it must go forward byte by byte
      for (size_t b = 0; b < len; b++) out[o + b] = out[o + b - off];
    }
    o += len;
  }
  return o == out_len ? 0 : -1;
}

// snappyLength(src): the declared uncompressed length, or -1.
static napi_value js_snappy_length(napi_env env, napi_callback_info info) {
  size_t argc = 1, n, hdr;
  napi_value argv[1];
  uint8_t *src;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !bytes_arg(env, argv[0], &src, &n)) return fail(env, "snappyLength: expected (Uint8Array src)");
  return num(env, (double)snappy_length(src, n, &hdr));
}

// snappyDecode(src, out): out.length must be snappyLength(src); returns 0, or -1 when corrupt.
static napi_value js_snappy_decode(napi_env env, napi_callback_info info) {
  size_t argc = 2, n, ol, hdr;
  napi_value argv[2];
  uint8_t *src, *out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || !bytes_arg(env, argv[0], &src, &n) || !bytes_arg(env, argv[1], &out, &ol))
    return fail(env, "snappyDecode: expected (Uint8Array src, Uint8Array out)");
  int64_t len = snappy_length(src, n, &hdr);
  if (len < 0 || (size_t)len != ol) return num(env, -1);
  return num(env, snappy_decode(src, n, hdr, out, ol));
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "encrypt", NAPI_AUTO_LENGTH, js_encrypt, NULL, &f);
  napi_set_named_property(env, exports, "encrypt", f);
  napi_create_function(env, "decrypt", NAPI_AUTO_LENGTH, js_decrypt, NULL, &f);
  napi_set_named_property(env, exports, "decrypt", f);
  napi_create_function(env, "snappyLength", NAPI_AUTO_LENGTH, js_snappy_length, NULL, &f);
  napi_set_named_property(env, exports, "snappyLength", f);
  napi_create_function(env, "snappyDecode", NAPI_AUTO_LENGTH, js_snappy_decode, NULL, &f);
  napi_set_named_property(env, exports, "snappyDecode", f);
  return exports;
}
