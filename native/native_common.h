/* Argument checking and errno errors shared by the addon's source files. */
#ifndef FLEECE_NATIVE_COMMON_H
#define FLEECE_NATIVE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NAPI_VERSION 8
#include <node_api.h>

#define MAX_SAFE_INTEGER 9007199254740991.0

/* Returns NULL from the calling N-API callback when a call failed (an exception is pending). */
#define CHECK(call)                                                       \
  do {                                                                    \
    if ((call) != napi_ok) {                                              \
      throw_napi_failure(env);                                            \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

void throw_napi_failure(napi_env env);
/* An Error whose `code` is the errno name, e.g. code 'EOPNOTSUPP'; NULL if even that failed. */
napi_value errno_error(napi_env env, const char *syscall, int err);
/* Throws errno_error(...); returns NULL for the caller to return. */
napi_value throw_errno(napi_env env, const char *syscall, int err);
/* Throws a TypeError (code ERR_INVALID_ARG_TYPE) with a printf-style message; returns NULL. */
napi_value throw_type(napi_env env, const char *format, ...) __attribute__((format(printf, 2, 3)));
bool get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv, const char *fn);
/* Reads a whole number in [0, max] (max <= 2^53 - 1); throws TypeError/RangeError naming `what`. */
bool get_integer(napi_env env, napi_value value, const char *fn, const char *what, double max, int64_t *out);
bool get_fd(napi_env env, napi_value value, const char *fn, int *fd);
/* Any TypedArray or DataView: base pointer and size in bytes. */
bool get_bytes(napi_env env, napi_value value, const char *fn, uint8_t **data, size_t *size);

/*
 * A promise-returning job on libuv's thread pool: `run` runs there and sets `err` (an errno, 0 on
 * success) and `syscall` (what failed); the promise then resolves with undefined or rejects with
 * errno_error(syscall, err). Embed it as the first member of a job's own struct allocated with
 * calloc: the struct is freed once the job completes.
 */
typedef struct pool_job {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep; /* a value kept alive until the job completes (a buffer it reads), or NULL */
  void (*run)(struct pool_job *job);
  int err;
  const char *syscall;
} pool_job;

/* Queues `job` (its `run` and `syscall` set), keeping `keep` (or NULL) alive; returns the promise, or NULL with an exception pending (the job freed). */
napi_value queue_pool_job(napi_env env, pool_job *job, const char *name, napi_value keep);

#endif
