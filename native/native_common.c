/* Argument checking and errno errors shared by the addon's source files (see native_common.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "native_common.h"

void throw_napi_failure(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, "EINTERNAL", "fleece_native: n-api call failed");
}

static const char *errno_name(int err) {
  const char *name = strerrorname_np(err);
  return name != NULL ? name : "EUNKNOWN";
}

/* An Error whose `code` is the errno name, e.g. code 'EOPNOTSUPP'; NULL if even that failed. */
napi_value errno_error(napi_env env, const char *syscall, int err) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s (%s)", syscall, strerror(err), errno_name(err));
  napi_value code_value, message_value, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) != napi_ok ||
      napi_create_error(env, code_value, message_value, &error) != napi_ok)
    return NULL;
  if (napi_create_int32(env, -err, &errno_value) == napi_ok)
    napi_set_named_property(env, error, "errno", errno_value);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) == napi_ok)
    napi_set_named_property(env, error, "syscall", syscall_value);
  return error;
}

/* Throws errno_error(...). */
napi_value throw_errno(napi_env env, const char *syscall, int err) {
  napi_value error = errno_error(env, syscall, err);
  if (error == NULL) throw_napi_failure(env);
  else napi_throw(env, error);
  return NULL;
}

bool get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv,
                     const char *fn) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (argc < expected) {
    char message[128];
    snprintf(message, sizeof message, "%s: expected %zu arguments, got %zu", fn, expected, argc);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return false;
  }
  return true;
}

/* Reads a whole number in [0, max] (max <= 2^53 - 1); throws TypeError/RangeError naming `what`. */
bool get_integer(napi_env env, napi_value value, const char *fn, const char *what,
                        double max, int64_t *out) {
  char message[192];
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (type != napi_number) {
    snprintf(message, sizeof message, "%s: %s must be a number", fn, what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return false;
  }
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  if (!(number >= 0 && number <= max) || number != (double)(int64_t)number) {
    snprintf(message, sizeof message, "%s: %s %.17g is not a whole number in [0, %.17g]", fn, what,
             number, max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
  }
  *out = (int64_t)number;
  return true;
}

bool get_fd(napi_env env, napi_value value, const char *fn, int *fd) {
  int64_t number;
  if (!get_integer(env, value, fn, "fd", (double)INT_MAX, &number)) return false;
  *fd = (int)number;
  return true;
}

/* Any TypedArray or DataView: base pointer and size in bytes. */
bool get_bytes(napi_env env, napi_value value, const char *fn, uint8_t **data,
                      size_t *size) {
  bool is_typed = false, is_view = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok ||
      napi_is_dataview(env, value, &is_view) != napi_ok) {
    throw_napi_failure(env);
    return false;
  }
  void *base = NULL;
  if (is_typed) {
    napi_typedarray_type type;
    size_t length;
    if (napi_get_typedarray_info(env, value, &type, &length, &base, NULL, NULL) != napi_ok) {
      throw_napi_failure(env);
      return false;
    }
    size_t element = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: element = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: element = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: element = 8; break;
      default: element = 1; break;
    }
    *size = length * element;
  } else if (is_view) {
    if (napi_get_dataview_info(env, value, size, &base, NULL, NULL) != napi_ok) {
      throw_napi_failure(env);
      return false;
    }
  } else {
    char message[128];
    snprintf(message, sizeof message, "%s: buffer must be a Buffer, TypedArray or DataView", fn);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return false;
  }
  *data = base;
  return true;
}

napi_value throw_type(napi_env env, const char *format, ...) {
  char message[192];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static void pool_job_execute(napi_env env, void *arg) {
  pool_job *job = arg;
  job->run(job);
}

static void pool_job_complete(napi_env env, napi_status status, void *arg) {
  pool_job *job = arg;
  napi_value result = NULL;
  if (status == napi_ok && job->err == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    result = errno_error(env, job->syscall, job->err != 0 ? job->err : ECANCELED);
    if (result == NULL) napi_get_undefined(env, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  if (job->keep != NULL) napi_delete_reference(env, job->keep);
  napi_delete_async_work(env, job->work);
  free(job);
}

napi_value queue_pool_job(napi_env env, pool_job *job, const char *name, napi_value keep) {
  napi_value promise, resource_name;
  if ((keep != NULL && napi_create_reference(env, keep, 1, &job->keep) != napi_ok) ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, pool_job_execute, pool_job_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    /* Nothing was queued: a created deferred is left unresolved with its promise unreturned. */
    if (job->keep != NULL) napi_delete_reference(env, job->keep);
    if (job->work != NULL) napi_delete_async_work(env, job->work);
    free(job);
    throw_napi_failure(env);
    return NULL;
  }
  return promise;
}
