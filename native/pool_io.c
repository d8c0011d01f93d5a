/*
 * File operations on libuv's thread pool that end by evicting what they touched from the page
 * cache (POSIX_FADV_DONTNEED): the kernel frees each page, ~0.8 µs apiece, and done on the main
 * thread that stalled a restore's dispatch of spans to the chunk workers for 30-60 ms at a time.
 *
 *   writeBack(fd): fdatasync, then evict the whole file. Rejects with the fdatasync error.
 *   readEvict(fd, buffer, length, position): pread until `length` bytes or end of file into
 *     buffer[0, length), then evict that range widened to 2 MiB boundaries; resolves the bytes
 *     read. Rejects with the pread error.
 *
 * The eviction is only a hint: its failure is ignored. The fd (and buffer) must stay valid until
 * the promise settles.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "native_common.h"

#define EVICT_ALIGN ((off_t)2 * 1024 * 1024)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buffer_ref; /* readEvict: keeps the buffer alive */
  int fd;
  uint8_t *data;
  size_t length;
  off_t position;
  size_t done;
  int err;
  const char *syscall;
} pool_op;

static void write_back_execute(napi_env env, void *arg) {
  pool_op *op = arg;
  int r;
  do r = fdatasync(op->fd);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    op->err = errno;
    op->syscall = "fdatasync";
    return;
  }
  (void)posix_fadvise(op->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static void read_evict_execute(napi_env env, void *arg) {
  pool_op *op = arg;
  while (op->done < op->length) {
    ssize_t r = pread(op->fd, op->data + op->done, op->length - op->done, op->position + (off_t)op->done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      op->err = errno;
      op->syscall = "pread";
      return;
    }
    if (r == 0) break;
    op->done += (size_t)r;
  }
  /* Widened to 2 MiB boundaries: the kernel evicts only folios wholly inside the range, and
   * readahead fills page caches with folios of up to 2 MiB, so exact ranges left most of a pack
   * behind. A neighbouring read that still wanted an evicted page reads it from disk again. */
  off_t from = op->position & ~(off_t)(EVICT_ALIGN - 1);
  off_t to = (op->position + (off_t)op->length + EVICT_ALIGN - 1) & ~(off_t)(EVICT_ALIGN - 1);
  (void)posix_fadvise(op->fd, from, to - from, POSIX_FADV_DONTNEED);
}

static void complete(napi_env env, napi_status status, void *arg) {
  pool_op *op = arg;
  napi_value result = NULL;
  if (status == napi_ok && op->err == 0) {
    if (op->buffer_ref != NULL) napi_create_double(env, (double)op->done, &result);
    else napi_get_undefined(env, &result);
    napi_resolve_deferred(env, op->deferred, result);
  } else {
    result = errno_error(env, op->syscall != NULL ? op->syscall : "poolIo", op->err != 0 ? op->err : ECANCELED);
    if (result == NULL) napi_get_undefined(env, &result);
    napi_reject_deferred(env, op->deferred, result);
  }
  if (op->buffer_ref != NULL) napi_delete_reference(env, op->buffer_ref);
  napi_delete_async_work(env, op->work);
  free(op);
}

/* Queues `op` (with an optional buffer to keep alive); returns its promise, or NULL with an exception. */
static napi_value queue(napi_env env, pool_op *op, napi_value buffer, const char *name, napi_async_execute_callback execute) {
  napi_value promise, resource_name;
  if ((buffer != NULL && napi_create_reference(env, buffer, 1, &op->buffer_ref) != napi_ok) ||
      napi_create_promise(env, &op->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, execute, complete, op, &op->work) != napi_ok ||
      napi_queue_async_work(env, op->work) != napi_ok) {
    /* Nothing was queued: a created deferred is left unresolved with its promise unreturned. */
    if (op->buffer_ref != NULL) napi_delete_reference(env, op->buffer_ref);
    if (op->work != NULL) napi_delete_async_work(env, op->work);
    free(op);
    throw_napi_failure(env);
    return NULL;
  }
  return promise;
}

static napi_value write_back(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, "writeBack") || !get_fd(env, argv[0], "writeBack", &fd)) return NULL;
  pool_op *op = calloc(1, sizeof *op);
  if (op == NULL) return throw_errno(env, "calloc", ENOMEM);
  op->fd = fd;
  return queue(env, op, NULL, "fleece:writeBack", write_back_execute);
}

static napi_value read_evict(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int fd;
  uint8_t *data;
  size_t size;
  int64_t length, position;
  if (!get_args(env, info, 4, argv, "readEvict") || !get_fd(env, argv[0], "readEvict", &fd) ||
      !get_bytes(env, argv[1], "readEvict", &data, &size) ||
      !get_integer(env, argv[2], "readEvict", "length", (double)size, &length) ||
      !get_integer(env, argv[3], "readEvict", "position", MAX_SAFE_INTEGER - (double)length, &position))
    return NULL;
  pool_op *op = calloc(1, sizeof *op);
  if (op == NULL) return throw_errno(env, "calloc", ENOMEM);
  op->fd = fd;
  op->data = data;
  op->length = (size_t)length;
  op->position = (off_t)position;
  return queue(env, op, argv[1], "fleece:readEvict", read_evict_execute);
}

bool register_pool_io(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writeBack", NULL, write_back, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readEvict", NULL, read_evict, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
