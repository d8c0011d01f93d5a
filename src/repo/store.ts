// The seam between the repository and where its bytes live (a local directory, memory, S3).
// Every method is idempotent and safe to retry; retries, rate limits and counting are
// wrappers around a Store, never options inside one (restic's backend lesson).

import { RepoError } from './errors.js';

export interface StoreSignal {
  readonly signal?: AbortSignal;
}

export interface PutOptions extends StoreSignal {
  /** Only create: when the key exists, leave it untouched and resolve `{ written: false }`. */
  readonly ifAbsent?: boolean;
  /**
   * Called at most once, as soon as the store will never read `data` again, which may be well
   * before put settles (a local store: once the bytes are written, before the fsync and rename).
   * The caller may reuse the buffer from then on; once put settles it may in any case. A wrapper
   * that may read `data` later (a retry, a compare) must not pass this on.
   */
  readonly onDataReleased?: () => void;
}

export interface GetOptions extends StoreSignal {
  /** Bytes [offset, offset+length); a range past the end yields the bytes that exist (maybe none). */
  readonly range?: { readonly offset: number; readonly length: number };
}

export interface StoreEntry {
  readonly key: string;
  readonly size: number;
}

export interface StoreStat {
  readonly size: number;
  /** Last modification time in ms since the epoch, when the store knows it. */
  readonly mtimeMs?: number;
}

export interface Store {
  /** Stores `data` under `key` atomically (readers see all or nothing); repeating it is harmless. */
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<{ written: boolean }>;
  /** Reads a whole object or a range; a missing key rejects with RepoError code 'ENOTFOUND'. */
  get(key: string, options?: GetOptions): Promise<Buffer>;
  /** Size (and mtime if known) of an object; a missing key rejects with code 'ENOTFOUND'. */
  stat(key: string, options?: StoreSignal): Promise<StoreStat>;
  /** Every key starting with `prefix`, each exactly once, in no promised order. */
  list(prefix: string, options?: StoreSignal): AsyncIterable<StoreEntry>;
  /** Removes `key`; deleting a missing key succeeds (idempotent). */
  delete(key: string, options?: StoreSignal): Promise<void>;
  /** Releases resources; idempotent. */
  close?(): Promise<void>;
}

const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** Rejects keys no store can map safely: empty, absolute, with '..' or dot-leading segments. */
export function checkKey(key: string): void {
  if (key.length === 0 || key.length > 512 || !key.split('/').every((s) => SEGMENT.test(s))) {
    throw new RepoError('EINVALID', `invalid store key '${key}': expected '/'-separated names of [A-Za-z0-9._-] not starting with '.'`);
  }
}

/** The error every store raises for a missing key. */
export function notFound(key: string, cause?: unknown): RepoError {
  return new RepoError('ENOTFOUND', `object '${key}' not found`, { cause });
}
