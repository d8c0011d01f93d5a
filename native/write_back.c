/*
 * writeBack(fd): fdatasync, then evict the file's clean cached pages (POSIX_FADV_DONTNEED), on
 * libuv's thread pool. A restore calls it every few dozen MiB: freeing the pages costs the kernel
 * ~0.8 µs each, and done synchronously on the main thread it stalled the dispatch of spans to the
 * chunk workers for 30-60 ms at a time. Resolves once both are done; rejects with the fdatasync
 * error (the eviction is only a hint, its failure is ignored). The fd must stay open until then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "native_common.h"

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
} write_back;

static void write_back_execute(napi_env env, void *arg) {
  write_back *w = arg;
  int r;
  do r = fdatasync(w->fd);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    w->err = errno;
    return;
  }
  (void)posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static void write_back_complete(napi_env env, napi_status status, void *arg) {
  write_back *w = arg;
  napi_value result = NULL;
  if (status == napi_ok && w->err == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, w->deferred, result);
  } else {
    result = errno_error(env, "fdatasync", w->err != 0 ? w->err : ECANCELED);
    if (result == NULL) napi_get_undefined(env, &result);
    napi_reject_deferred(env, w->deferred, result);
  }
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value write_back_start(napi_env env, napi_callback_info info) {
  napi_value argv[1], promise, name;
  int fd;
  if (!get_args(env, info, 1, argv, "writeBack") || !get_fd(env, argv[0], "writeBack", &fd)) return NULL;
  write_back *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, "calloc", ENOMEM);
  w->fd = fd;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "fleece:writeBack", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, write_back_execute, write_back_complete, w, &w->work) != napi_ok ||
      napi_queue_async_work(env, w->work) != napi_ok) {
    /* Nothing was queued: a created deferred is left unresolved with its promise unreturned. */
    if (w->work != NULL) napi_delete_async_work(env, w->work);
    free(w);
    throw_napi_failure(env);
    return NULL;
  }
  return promise;
}

bool register_write_back(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writeBack", NULL, write_back_start, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
