/*
 * Tiny Linux file primitives that Node's fs lacks: SEEK_DATA/SEEK_HOLE, fallocate (punch hole,
 * zero range), preadv2/pwritev2 with RWF_NOWAIT (serve page-cache hits without a thread-pool
 * hop), posix_fadvise, all synchronous; and one asynchronous call, writeDirect, which writes a
 * whole file opened with O_DIRECT from any buffer; plus pageOffset and copyInto for buffers
 * shared between threads. The writer thread is in file_writer.c, argument checks in
 * native_common.c. Every argument is validated; bad input throws, never crashes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "native_common.h"

bool register_file_writer(napi_env env, napi_value exports);
bool register_gcm(napi_env env, napi_value exports);
bool register_write_back(napi_env env, napi_value exports);

static napi_value make_number(napi_env env, double number) {
  napi_value result;
  CHECK(napi_create_double(env, number, &result));
  return result;
}

static napi_value seek(napi_env env, napi_callback_info info, int whence, const char *fn) {
  napi_value argv[2];
  int fd;
  int64_t offset;
  if (!get_args(env, info, 2, argv, fn) || !get_fd(env, argv[0], fn, &fd) ||
      !get_integer(env, argv[1], fn, "offset", MAX_SAFE_INTEGER, &offset))
    return NULL;
  off_t position = lseek(fd, (off_t)offset, whence);
  if (position < 0) {
    if (errno == ENXIO) return make_number(env, -1);
    return throw_errno(env, "lseek", errno);
  }
  return make_number(env, (double)position);
}

/* seekData(fd, offset): first data byte at or after offset, or -1 when only a hole follows. */
static napi_value seek_data(napi_env env, napi_callback_info info) {
  return seek(env, info, SEEK_DATA, "seekData");
}

/* seekHole(fd, offset): first hole byte at or after offset (EOF counts), or -1 past EOF. */
static napi_value seek_hole(napi_env env, napi_callback_info info) {
  return seek(env, info, SEEK_HOLE, "seekHole");
}

/* Shared by the (fd, offset, length) calls; length must keep offset+length within 2^53 - 1. */
static bool get_range(napi_env env, napi_callback_info info, const char *fn, int *fd,
                      int64_t *offset, int64_t *length) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, fn) || !get_fd(env, argv[0], fn, fd) ||
      !get_integer(env, argv[1], fn, "offset", MAX_SAFE_INTEGER, offset) ||
      !get_integer(env, argv[2], fn, "length", MAX_SAFE_INTEGER - (double)*offset, length))
    return false;
  return true;
}

static napi_value do_fallocate(napi_env env, napi_callback_info info, int mode, const char *fn) {
  int fd;
  int64_t offset, length;
  if (!get_range(env, info, fn, &fd, &offset, &length)) return NULL;
  if (length == 0) return NULL;
  int rc;
  do rc = fallocate(fd, mode, (off_t)offset, (off_t)length);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) return throw_errno(env, "fallocate", errno);
  return NULL;
}

/* punchHole(fd, offset, length): deallocates the range; it reads back as zeroes. */
static napi_value punch_hole(napi_env env, napi_callback_info info) {
  return do_fallocate(env, info, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "punchHole");
}

/* zeroRange(fd, offset, length): makes the range read as zeroes, keeping it allocated. */
static napi_value zero_range(napi_env env, napi_callback_info info) {
  return do_fallocate(env, info, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, "zeroRange");
}

/* allocate(fd, offset, length): allocates blocks (holes become allocated zeroes), size kept. */
static napi_value allocate(napi_env env, napi_callback_info info) {
  return do_fallocate(env, info, FALLOC_FL_KEEP_SIZE, "allocate");
}

static napi_value fadvise(napi_env env, napi_callback_info info, int advice, const char *fn) {
  int fd;
  int64_t offset, length;
  if (!get_range(env, info, fn, &fd, &offset, &length)) return NULL;
  /* posix_fadvise returns the error number instead of setting errno. */
  int rc = posix_fadvise(fd, (off_t)offset, (off_t)length, advice);
  if (rc != 0) return throw_errno(env, "posix_fadvise", rc);
  return NULL;
}

/* dropCache(fd, offset, length): evicts clean cached pages (POSIX_FADV_DONTNEED; 0 = to EOF). */
static napi_value drop_cache(napi_env env, napi_callback_info info) {
  return fadvise(env, info, POSIX_FADV_DONTNEED, "dropCache");
}

/* willNeed(fd, offset, length): starts asynchronous readahead (POSIX_FADV_WILLNEED). */
static napi_value will_need(napi_env env, napi_callback_info info) {
  return fadvise(env, info, POSIX_FADV_WILLNEED, "willNeed");
}

/* (fd, buffer, bufferOffset, length, position) with bufferOffset+length inside the buffer. */
static napi_value nowait_io(napi_env env, napi_callback_info info, bool writing, const char *fn) {
  napi_value argv[5];
  int fd;
  uint8_t *data;
  size_t size;
  int64_t buffer_offset, length, position;
  if (!get_args(env, info, 5, argv, fn) || !get_fd(env, argv[0], fn, &fd) ||
      !get_bytes(env, argv[1], fn, &data, &size) ||
      !get_integer(env, argv[2], fn, "bufferOffset", (double)size, &buffer_offset) ||
      !get_integer(env, argv[3], fn, "length", (double)(size - (size_t)buffer_offset), &length) ||
      !get_integer(env, argv[4], fn, "position", MAX_SAFE_INTEGER - (double)length, &position))
    return NULL;
  if (length > SSIZE_MAX) length = SSIZE_MAX;
  struct iovec iov = {.iov_base = data + buffer_offset, .iov_len = (size_t)length};
  ssize_t done;
  do {
    done = writing ? pwritev2(fd, &iov, 1, (off_t)position, RWF_NOWAIT)
                   : preadv2(fd, &iov, 1, (off_t)position, RWF_NOWAIT);
  } while (done < 0 && errno == EINTR);
  if (done < 0) {
    /* Not cached / would block, or the kernel or filesystem lacks NOWAIT: use the pool. */
    if (errno == EAGAIN || errno == EOPNOTSUPP || errno == ENOSYS) return make_number(env, -1);
    return throw_errno(env, writing ? "pwritev2" : "preadv2", errno);
  }
  return make_number(env, (double)done);
}

/* preadNoWait(...): bytes read (0 at EOF) from the page cache, or -1 if that would block. */
static napi_value pread_nowait(napi_env env, napi_callback_info info) {
  return nowait_io(env, info, false, "preadNoWait");
}

/* pwriteNoWait(...): bytes written without blocking, or -1 if that would block. */
static napi_value pwrite_nowait(napi_env env, napi_callback_info info) {
  return nowait_io(env, info, true, "pwriteNoWait");
}

/*
 * pageOffset(view): the address of the view's first byte modulo the page size. V8 takes large
 * ArrayBuffers from malloc, which starts them 16 bytes into a page; the kernel's copies into a
 * destination 1-31 bytes into a page (read, pread from the page cache) ran ~5x slower on this
 * AMD EPYC than into one at a page boundary, so callers align big I/O buffers with this.
 */
static napi_value page_offset(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t *data;
  size_t size;
  if (!get_args(env, info, 1, argv, "pageOffset") || !get_bytes(env, argv[0], "pageOffset", &data, &size)) return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  return make_number(env, (double)((uintptr_t)data % (uintptr_t)page));
}

/*
 * copyInto(target, source): copies all of `source` to the start of `target`, which must be at
 * least as long. Between SharedArrayBuffers, TypedArray.prototype.set (and Buffer.copy, built on
 * it) copies word by word with relaxed atomics, about 2 GB/s here; memcpy runs several times that.
 */
static napi_value copy_into(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint8_t *target, *source;
  size_t target_size, source_size;
  if (!get_args(env, info, 2, argv, "copyInto") || !get_bytes(env, argv[0], "copyInto", &target, &target_size) ||
      !get_bytes(env, argv[1], "copyInto", &source, &source_size))
    return NULL;
  if (source_size > target_size) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "copyInto: source is longer than target");
    return NULL;
  }
  if (source_size > 0) memmove(target, source, source_size);
  return NULL;
}

/*
 * writeDirect(fd, buffer, length): on the thread pool, writes buffer[0, length) as the whole
 * content of a file opened with O_DIRECT (from offset 0), then trims it to `length`. A buffer
 * that starts at a page boundary is written straight from the caller's memory but for its last
 * partial block; any other goes through an aligned bounce buffer 4 MiB at a time (1 MiB writes
 * ran ~10 % slower here), so the caller's buffer needs no alignment. The last piece is
 * zero-padded to the block size and the padding cut off with ftruncate. O_DIRECT keeps large writes out of the page cache: where
 * fresh page-cache pages are expensive (a VM whose free memory goes back to the host), a
 * buffered write of 32 MiB costs several times the disk's own time. Durability still needs
 * fsync (device caches).
 */
#define DIRECT_PIECE (4 << 20)
#define DIRECT_ALIGN 4096

typedef struct {
  pool_job job; /* first: freed with it; keeps the buffer alive until the write completes */
  int fd;
  const uint8_t *data;
  size_t length;
} direct_write;

/*
 * Bounce buffers, shared by the pool threads: taken for one call and given back, so there are
 * only as many as calls ever ran at once (a few MiB each, kept warm), not one per pool thread.
 */
#define MAX_SPARE_BOUNCES 8
static pthread_mutex_t bounce_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *spare_bounces[MAX_SPARE_BOUNCES];
static int spare_count;

static uint8_t *take_bounce(void) {
  uint8_t *b = NULL;
  pthread_mutex_lock(&bounce_lock);
  if (spare_count > 0) b = spare_bounces[--spare_count];
  pthread_mutex_unlock(&bounce_lock);
  if (b == NULL) {
    void *p = NULL;
    if (posix_memalign(&p, DIRECT_ALIGN, DIRECT_PIECE) == 0) b = p;
  }
  return b;
}

static void give_bounce(uint8_t *b) {
  pthread_mutex_lock(&bounce_lock);
  if (spare_count < MAX_SPARE_BOUNCES) {
    spare_bounces[spare_count++] = b;
    b = NULL;
  }
  pthread_mutex_unlock(&bounce_lock);
  free(b);
}

/* pwrite()s all of [buf, buf + length) at `offset`; 0 or an errno. */
static int write_all(int fd, const uint8_t *buf, size_t length, off_t offset) {
  for (size_t put = 0; put < length;) {
    ssize_t r = pwrite(fd, buf + put, length - put, offset + (off_t)put);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? errno : EIO;
    put += (size_t)r;
  }
  return 0;
}

/*
 * Writes the whole of w's data: when the caller's buffer starts at a block boundary (packs are
 * built in page-aligned buffers), all whole blocks straight from it, and only the tail through
 * `bounce`; otherwise everything through `bounce`. Sets the job's err and syscall on failure.
 */
static void write_through(direct_write *w, uint8_t *bounce) {
  size_t done = 0;
  if (((uintptr_t)w->data & (DIRECT_ALIGN - 1)) == 0) {
    done = w->length & ~(size_t)(DIRECT_ALIGN - 1);
    int err = write_all(w->fd, w->data, done, 0);
    if (err != 0) {
      w->job.err = err;
      w->job.syscall = "pwrite";
      return;
    }
  }
  while (done < w->length) {
    size_t n = w->length - done < DIRECT_PIECE ? w->length - done : DIRECT_PIECE;
    size_t padded = (n + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);
    memcpy(bounce, w->data + done, n);
    memset(bounce + n, 0, padded - n);
    int err = write_all(w->fd, bounce, padded, (off_t)done);
    if (err != 0) {
      w->job.err = err;
      w->job.syscall = "pwrite";
      return;
    }
    done += n;
  }
  if (ftruncate(w->fd, (off_t)w->length) != 0) {
    w->job.err = errno;
    w->job.syscall = "ftruncate";
  }
}

static void direct_write_run(pool_job *job) {
  direct_write *w = (direct_write *)job;
  uint8_t *bounce = take_bounce();
  if (bounce == NULL) {
    job->err = ENOMEM;
    job->syscall = "posix_memalign";
    return;
  }
  write_through(w, bounce);
  give_bounce(bounce);
}

static napi_value write_direct(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  uint8_t *data;
  size_t size;
  int64_t length;
  if (!get_args(env, info, 3, argv, "writeDirect") || !get_fd(env, argv[0], "writeDirect", &fd) ||
      !get_bytes(env, argv[1], "writeDirect", &data, &size) ||
      !get_integer(env, argv[2], "writeDirect", "length", (double)size, &length))
    return NULL;
  direct_write *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, "calloc", ENOMEM);
  w->job.run = direct_write_run;
  w->job.syscall = "writeDirect";
  w->fd = fd;
  w->data = data;
  w->length = (size_t)length;
  return queue_pool_job(env, &w->job, "fleece:writeDirect", argv[1]);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"seekData", NULL, seek_data, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seekHole", NULL, seek_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"punchHole", NULL, punch_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"zeroRange", NULL, zero_range, NULL, NULL, NULL, napi_enumerable, NULL},
      {"allocate", NULL, allocate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dropCache", NULL, drop_cache, NULL, NULL, NULL, napi_enumerable, NULL},
      {"willNeed", NULL, will_need, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadNoWait", NULL, pread_nowait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pwriteNoWait", NULL, pwrite_nowait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeDirect", NULL, write_direct, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pageOffset", NULL, page_offset, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyInto", NULL, copy_into, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties));
  if (!register_file_writer(env, exports) || !register_gcm(env, exports) || !register_write_back(env, exports)) {
    throw_napi_failure(env);
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
