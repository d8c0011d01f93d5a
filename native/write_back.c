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
  pool_job job; /* first: freed with it */
  int fd;
} write_back;

static void write_back_run(pool_job *job) {
  write_back *w = (write_back *)job;
  int r;
  do r = fdatasync(w->fd);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    job->err = errno;
    return;
  }
  (void)posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static napi_value write_back_start(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, "writeBack") || !get_fd(env, argv[0], "writeBack", &fd)) return NULL;
  write_back *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, "calloc", ENOMEM);
  w->job.run = write_back_run;
  w->job.syscall = "fdatasync";
  w->fd = fd;
  return queue_pool_job(env, &w->job, "fleece:writeBack", NULL);
}

bool register_write_back(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writeBack", NULL, write_back_start, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
