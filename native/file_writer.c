/*
 * A file writer thread: small page-cache writes done off the event loop without libuv's pool.
 *
 * Why not the pool: each pool write wakes one of many sleeping threads and posts its completion
 * back on its own, and on these VMs those wake-ups cost more than the write (~49 us of CPU per
 * 4 KiB write). Why not the event loop: a buffered 4 KiB pwrite into a file the page cache holds
 * in large folios costs the kernel 10-17 us (ext4 walks every buffer head of the folio), all of it
 * on the one thread that parses and answers every request. One thread per writer takes jobs in
 * batches: while writes keep coming it never sleeps, so the event loop pays only a queue push and
 * a completion call, and the kernel's part of each write runs on another core.
 *
 * JS: createWriter(onDone) -> handle; writerSubmit(handle, fd, buffer, position, id) queues a
 * write of the whole buffer (the caller keeps the buffer alive until onDone); onDone(id, error)
 * runs on the event loop with null or an Error whose `code` is the errno name; writerClose(handle)
 * stops accepting jobs and lets the thread end once its queue is empty.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "native_common.h"

typedef struct job {
  struct job *next;
  int fd;
  const uint8_t *data;
  size_t length;
  int64_t position;
  double id;
  int error; /* 0 or errno */
} job;

typedef struct {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  job *head, *tail;
  bool sleeping;
  bool stopping;
  bool started; /* the thread exists (join it) */
  size_t unanswered; /* submitted, onDone not yet called; event-loop side only */
  struct handle *handle; /* the JS handle pointing here, until one of the two goes */
  napi_threadsafe_function done;
} writer;

/*
 * What the JS handle holds: a pointer to the writer, cleared when the writer is released, so a
 * handle used after writerClose (or collected without it) never reaches freed memory.
 */
typedef struct handle {
  writer *w;
} handle;

/* Writes all of the job's bytes, finishing short writes. */
static void run_job(job *j) {
  size_t done = 0;
  while (done < j->length) {
    ssize_t n = pwrite(j->fd, j->data + done, j->length - done, j->position + (int64_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      j->error = errno;
      return;
    }
    if (n == 0) {
      j->error = EIO;
      return;
    }
    done += (size_t)n;
  }
}

static void *writer_main(void *arg) {
  writer *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->head == NULL && !w->stopping) {
      w->sleeping = true;
      pthread_cond_wait(&w->wake, &w->lock);
      w->sleeping = false;
    }
    if (w->head == NULL) break; /* stopping with nothing left */
    job *batch = w->head;
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (batch != NULL) {
      job *j = batch;
      batch = j->next;
      run_job(j);
      /* napi_closing only during teardown, when nobody waits for the answer any more. */
      if (napi_call_threadsafe_function(w->done, j, napi_tsfn_nonblocking) != napi_ok) free(j);
    }
    pthread_mutex_lock(&w->lock);
  }
  pthread_mutex_unlock(&w->lock);
  /* The thread's own reference: with the JS handle's gone too, finalize_writer runs. */
  napi_release_threadsafe_function(w->done, napi_tsfn_release);
  return NULL;
}

/* On the event loop: hands one finished job to onDone(id, error). */
static void call_done(napi_env env, napi_value on_done, void *context, void *data) {
  job *j = data;
  writer *w = context;
  if (env != NULL) {
    if (--w->unanswered == 0) napi_unref_threadsafe_function(env, w->done);
    napi_value argv[2], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_double(env, j->id, &argv[0]);
    if (j->error == 0) napi_get_null(env, &argv[1]);
    else {
      argv[1] = errno_error(env, "pwrite", j->error);
      if (argv[1] == NULL) napi_get_null(env, &argv[1]);
    }
    napi_call_function(env, undefined, on_done, 2, argv, NULL);
  }
  free(j);
}

/*
 * Runs once the JS handle and the thread released the function and every completion was
 * delivered (or at environment teardown).
 */
static void finalize_writer(napi_env env, void *data, void *hint) {
  writer *w = data;
  if (w->handle != NULL) w->handle->w = NULL;
  pthread_mutex_lock(&w->lock);
  w->stopping = true;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  if (w->started) pthread_join(w->thread, NULL);
  for (job *j = w->head; j != NULL;) { /* only at teardown, when jobs were left queued */
    job *next = j->next;
    free(j);
    j = next;
  }
  pthread_cond_destroy(&w->wake);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

/* Stops accepting jobs; the thread ends, and the writer is freed, once its queue is empty. */
static void release_writer(handle *h) {
  writer *w = h->w;
  h->w = NULL;
  w->handle = NULL;
  pthread_mutex_lock(&w->lock);
  w->stopping = true;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  napi_release_threadsafe_function(w->done, napi_tsfn_release);
}

/* A handle collected without writerClose releases its writer. */
static void finalize_handle(napi_env env, void *data, void *hint) {
  handle *h = data;
  if (h->w != NULL) release_writer(h);
  free(h);
}

static napi_value create_writer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "createWriter")) return NULL;
  napi_valuetype type;
  CHECK(napi_typeof(env, argv[0], &type));
  if (type != napi_function) return throw_type(env, "createWriter: onDone must be a function");
  writer *w = calloc(1, sizeof *w);
  handle *h = malloc(sizeof *h);
  if (w == NULL || h == NULL) {
    free(w);
    free(h);
    return throw_errno(env, "createWriter", ENOMEM);
  }
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->wake, NULL);
  h->w = w;
  w->handle = h;
  napi_value name;
  if (napi_create_string_utf8(env, "fleece file writer", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 2, w, finalize_writer, w, call_done, &w->done) != napi_ok) {
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
    free(h);
    throw_napi_failure(env);
    return NULL;
  }
  /* An idle writer does not keep the process alive (writer_submit refs it while writes are pending). */
  napi_unref_threadsafe_function(env, w->done);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int err = pthread_create(&w->thread, &attr, writer_main, w);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    /* The thread's reference goes here, the handle's in release_writer: finalize_writer frees w. */
    napi_release_threadsafe_function(w->done, napi_tsfn_release);
    release_writer(h);
    free(h);
    return throw_errno(env, "createWriter: pthread_create", err);
  }
  w->started = true;
  napi_value external;
  if (napi_create_external(env, h, finalize_handle, NULL, &external) != napi_ok) {
    release_writer(h);
    free(h);
    throw_napi_failure(env);
    return NULL;
  }
  return external;
}

/* The handle's live writer; NULL with an exception pending if it is not one or was closed. */
static handle *get_handle(napi_env env, napi_value value, const char *fn) {
  handle *h = NULL;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external || napi_get_value_external(env, value, (void **)&h) != napi_ok || h == NULL) {
    throw_type(env, "%s: not a writer handle", fn);
    return NULL;
  }
  if (h->w == NULL) {
    napi_throw_error(env, "ECLOSED", "file writer is closed");
    return NULL;
  }
  return h;
}

static napi_value writer_submit(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "writerSubmit")) return NULL;
  handle *h = get_handle(env, argv[0], "writerSubmit");
  if (h == NULL) return NULL;
  writer *w = h->w;
  int fd;
  uint8_t *data;
  size_t length;
  int64_t position;
  double id;
  if (!get_fd(env, argv[1], "writerSubmit", &fd) || !get_bytes(env, argv[2], "writerSubmit", &data, &length) ||
      !get_integer(env, argv[3], "writerSubmit", "position", MAX_SAFE_INTEGER - (double)length, &position))
    return NULL;
  CHECK(napi_get_value_double(env, argv[4], &id));
  job *j = malloc(sizeof *j);
  if (j == NULL) return throw_errno(env, "writerSubmit", ENOMEM);
  *j = (job){.fd = fd, .data = data, .length = length, .position = position, .id = id};
  /* Unanswered writes keep the event loop alive, as libuv's pending fs requests do. */
  if (w->unanswered++ == 0) napi_ref_threadsafe_function(env, w->done);
  pthread_mutex_lock(&w->lock);
  if (w->tail != NULL) w->tail->next = j;
  else w->head = j;
  w->tail = j;
  if (w->sleeping) pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

static napi_value writer_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "writerClose")) return NULL;
  handle *h = get_handle(env, argv[0], "writerClose");
  if (h == NULL) return NULL;
  release_writer(h);
  return NULL;
}

bool register_file_writer(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"createWriter", NULL, create_writer, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writerSubmit", NULL, writer_submit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writerClose", NULL, writer_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props) == napi_ok;
}
