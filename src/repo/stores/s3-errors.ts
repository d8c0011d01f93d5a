// How S3 failures become fleece errors: a missing bucket is ENOREPO, cancellation is EABORTED,
// anything else ESTORE with the S3 code and HTTP status quoted and a `retryable` verdict that
// RetryStore trusts (5xx, throttling, timeouts, dropped connections: yes; 4xx refusals: no).

import { AbortedError, FleeceError } from '../../core/errors.js';
import { RepoError } from '../errors.js';

interface SdkError {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
  readonly $retryable?: unknown;
}

export class S3StoreError extends FleeceError {
  /** True when the same request may well succeed if repeated. */
  readonly retryable: boolean;
  /** HTTP status of the response, when there was one. */
  readonly status: number | undefined;

  constructor(message: string, options: { retryable: boolean; status?: number; cause?: unknown }) {
    super('ESTORE', message, { cause: options.cause });
    this.retryable = options.retryable;
    this.status = options.status;
  }
}

/** HTTP status an SDK error came with, if any. */
export function s3Status(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

export function isS3Status(err: unknown, status: number): boolean {
  return s3Status(err) === status;
}

const RETRYABLE_NAMES = new Set(['SlowDown', 'RequestTimeout', 'RequestTimeTooSkewed', 'Throttling', 'ThrottlingException', 'InternalError', 'ServiceUnavailable', 'TimeoutError']);

/** Wraps an SDK error from `op` on `bucket/key`. */
export function s3Error(op: string, bucket: string, key: string, err: unknown, signal?: AbortSignal): Error {
  const e = (err ?? {}) as SdkError;
  if (signal?.aborted || e.name === 'AbortError') return new AbortedError(`s3 ${op} of '${key}' aborted`, { cause: err });
  if (e.name === 'NoSuchBucket') return new RepoError('ENOREPO', `s3 bucket '${bucket}' does not exist`, { cause: err });
  const status = s3Status(err);
  // No status at all means the request never got an answer (refused, reset, timed out).
  const retryable = status === undefined || status >= 500 || status === 408 || status === 409 || status === 429 || RETRYABLE_NAMES.has(e.name ?? '') || Boolean(e.$retryable);
  const name = e.name === 'Error' ? undefined : e.name;
  const what = [name, e.code, status !== undefined ? `http ${status}` : undefined].filter((s, i, all) => s && all.indexOf(s) === i).join(', ');
  const detail = e.message && e.message !== e.name && e.message !== 'UnknownError' ? `: ${e.message}` : '';
  return new S3StoreError(`s3 ${op} of '${bucket}/${key}' failed (${what || 'no response'})${detail}`, { retryable, status, cause: err });
}
