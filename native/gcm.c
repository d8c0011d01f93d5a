/*
 * AES-256-GCM for sealing repository blobs, through the OpenSSL that Node itself links and
 * exports (the headers come with Node's, under include/node/openssl).
 *
 * Why not node:crypto: a Cipheriv is a stream object built per blob, its update() allocates a
 * fresh output buffer that then has to be copied into the pack, and each blob expands the key
 * again. For 64 KiB blobs that ran at ~1 GB/s per core here, where the cipher itself does
 * ~2.5 GB/s. A handle here keeps one expanded key per direction, and seal/open write straight
 * into the caller's buffer (in place when asked).
 *
 * Stored layout (docs/repository-format.md): nonce (12 random bytes) | ciphertext | tag (16);
 * the associated data is the blob's id followed by its type byte.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "native_common.h"

#define KEY_LENGTH 32
#define ID_LENGTH 32
#define NONCE_LENGTH 12
#define TAG_LENGTH 16

typedef struct {
  EVP_CIPHER_CTX *seal;
  EVP_CIPHER_CTX *open;
} gcm;

/* Marks our externals so that another external (a writer handle) is never taken for one. */
static const napi_type_tag GCM_TAG = {0x6663656c65656667ULL, 0x61657332353667ULL};

static void free_gcm(gcm *g) {
  /* EVP_CIPHER_CTX_free cleanses the expanded key. */
  EVP_CIPHER_CTX_free(g->seal);
  EVP_CIPHER_CTX_free(g->open);
  free(g);
}

static void finalize_gcm(napi_env env, void *data, void *hint) { free_gcm(data); }

static napi_value gcm_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t *key;
  size_t key_length;
  if (!get_args(env, info, 1, argv, "gcmCreate") || !get_bytes(env, argv[0], "gcmCreate", &key, &key_length)) return NULL;
  if (key_length != KEY_LENGTH) return throw_type(env, "gcmCreate: key must be %d bytes, got %zu", KEY_LENGTH, key_length);
  gcm *g = calloc(1, sizeof *g);
  if (g == NULL) return throw_errno(env, "gcmCreate", ENOMEM);
  g->seal = EVP_CIPHER_CTX_new();
  g->open = EVP_CIPHER_CTX_new();
  if (g->seal == NULL || g->open == NULL ||
      EVP_EncryptInit_ex(g->seal, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
      EVP_DecryptInit_ex(g->open, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
    free_gcm(g);
    napi_throw_error(env, "ECRYPTO", "gcmCreate: cannot set up AES-256-GCM");
    return NULL;
  }
  napi_value external;
  if (napi_create_external(env, g, finalize_gcm, NULL, &external) != napi_ok) {
    free_gcm(g);
    throw_napi_failure(env);
    return NULL;
  }
  if (napi_type_tag_object(env, external, &GCM_TAG) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  return external;
}

static gcm *get_gcm(napi_env env, napi_value value, const char *fn) {
  bool tagged = false;
  gcm *g = NULL;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &GCM_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, (void **)&g) != napi_ok || g == NULL) {
    throw_type(env, "%s: not a gcm handle", fn);
    return NULL;
  }
  return g;
}

/* The blob id (32 bytes) and type (0-255) that authenticate a blob's place. */
static bool get_aad(napi_env env, napi_value *argv, const char *fn, uint8_t **id, int64_t *type) {
  size_t id_length;
  if (!get_bytes(env, argv[0], fn, id, &id_length) || !get_integer(env, argv[1], fn, "type", 255, type)) return false;
  if (id_length != ID_LENGTH) {
    throw_type(env, "%s: id must be %d bytes, got %zu", fn, ID_LENGTH, id_length);
    return false;
  }
  return true;
}

/* Either the very same bytes (in place, which OpenSSL allows) or no overlap at all. */
static bool disjoint_or_same(const uint8_t *a, const uint8_t *b, size_t length) {
  return a == b || a + length <= b || b + length <= a;
}

static bool feed_aad(EVP_CIPHER_CTX *ctx, const uint8_t *id, int64_t type, bool encrypt) {
  uint8_t type_byte = (uint8_t)type;
  int n;
  if (encrypt) return EVP_EncryptUpdate(ctx, NULL, &n, id, ID_LENGTH) == 1 && EVP_EncryptUpdate(ctx, NULL, &n, &type_byte, 1) == 1;
  return EVP_DecryptUpdate(ctx, NULL, &n, id, ID_LENGTH) == 1 && EVP_DecryptUpdate(ctx, NULL, &n, &type_byte, 1) == 1;
}

/*
 * gcmSeal(handle, id, type, plain, out): writes nonce | ciphertext | tag to the start of `out`
 * and returns its length (plain + 28). `plain` may be out[12, 12 + plain.length) exactly.
 */
static napi_value gcm_seal(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "gcmSeal")) return NULL;
  gcm *g = get_gcm(env, argv[0], "gcmSeal");
  uint8_t *id, *plain, *out;
  int64_t type;
  size_t plain_length, out_length;
  if (g == NULL || !get_aad(env, argv + 1, "gcmSeal", &id, &type) || !get_bytes(env, argv[3], "gcmSeal", &plain, &plain_length) ||
      !get_bytes(env, argv[4], "gcmSeal", &out, &out_length))
    return NULL;
  size_t sealed_length = plain_length + NONCE_LENGTH + TAG_LENGTH;
  if (plain_length > INT32_MAX || out_length < sealed_length)
    return throw_type(env, "gcmSeal: out holds %zu bytes, sealing %zu needs %zu", out_length, plain_length, sealed_length);
  uint8_t *body = out + NONCE_LENGTH;
  if (plain != body && !(plain + plain_length <= out || out + sealed_length <= plain))
    return throw_type(env, "gcmSeal: plain overlaps out other than at out[12]");
  int n = 0, last = 0;
  if (RAND_bytes(out, NONCE_LENGTH) != 1 || EVP_EncryptInit_ex(g->seal, NULL, NULL, NULL, out) != 1 || !feed_aad(g->seal, id, type, true) ||
      EVP_EncryptUpdate(g->seal, body, &n, plain, (int)plain_length) != 1 || EVP_EncryptFinal_ex(g->seal, body + n, &last) != 1 ||
      EVP_CIPHER_CTX_ctrl(g->seal, EVP_CTRL_GCM_GET_TAG, TAG_LENGTH, body + n + last) != 1) {
    napi_throw_error(env, "ECRYPTO", "gcmSeal: AES-256-GCM encryption failed");
    return NULL;
  }
  napi_value result;
  CHECK(napi_create_uint32(env, (uint32_t)(NONCE_LENGTH + n + last + TAG_LENGTH), &result));
  return result;
}

/*
 * gcmOpen(handle, id, type, stored, out): decrypts stored (nonce | ciphertext | tag) into the
 * start of `out` (stored.length - 28 bytes; out may be stored[12, ...) exactly) and returns
 * true, or false when the tag does not authenticate (out then holds garbage).
 */
static napi_value gcm_open(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "gcmOpen")) return NULL;
  gcm *g = get_gcm(env, argv[0], "gcmOpen");
  uint8_t *id, *stored, *out;
  int64_t type;
  size_t stored_length, out_length;
  if (g == NULL || !get_aad(env, argv + 1, "gcmOpen", &id, &type) || !get_bytes(env, argv[3], "gcmOpen", &stored, &stored_length) ||
      !get_bytes(env, argv[4], "gcmOpen", &out, &out_length))
    return NULL;
  if (stored_length < NONCE_LENGTH + TAG_LENGTH || stored_length > INT32_MAX)
    return throw_type(env, "gcmOpen: a sealed blob is 28 bytes or more, got %zu", stored_length);
  size_t body_length = stored_length - NONCE_LENGTH - TAG_LENGTH;
  uint8_t *body = stored + NONCE_LENGTH;
  if (out_length < body_length) return throw_type(env, "gcmOpen: out holds %zu bytes, needs %zu", out_length, body_length);
  if (!disjoint_or_same(body, out, body_length)) return throw_type(env, "gcmOpen: out overlaps stored other than at stored[12]");
  /* The tag is copied first: decrypting in place never overwrites it, but a caller's out might. */
  uint8_t tag[TAG_LENGTH];
  memcpy(tag, body + body_length, TAG_LENGTH);
  int n = 0, last = 0;
  if (EVP_DecryptInit_ex(g->open, NULL, NULL, NULL, stored) != 1 || !feed_aad(g->open, id, type, false) ||
      EVP_DecryptUpdate(g->open, out, &n, body, (int)body_length) != 1 ||
      EVP_CIPHER_CTX_ctrl(g->open, EVP_CTRL_GCM_SET_TAG, TAG_LENGTH, tag) != 1) {
    napi_throw_error(env, "ECRYPTO", "gcmOpen: AES-256-GCM decryption failed");
    return NULL;
  }
  bool authentic = EVP_DecryptFinal_ex(g->open, out + n, &last) == 1;
  napi_value result;
  CHECK(napi_get_boolean(env, authentic, &result));
  return result;
}

bool register_gcm(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gcmCreate", NULL, gcm_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gcmSeal", NULL, gcm_seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gcmOpen", NULL, gcm_open, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
