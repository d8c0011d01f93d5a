// Retries a store's transient failures with capped exponential backoff and full jitter. Safe
// because every Store call is idempotent. A retried put-if-absent that finds the key taken
// reads it back: the same bytes mean our own lost first attempt landed, so it still says written.
// Every call runs under one shared child of the caller's signal (AbortFanout), so attempts,
// backoffs and queued requests add no listeners to the caller's signal beyond one.

import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, FleeceError, throwIfAborted } from '../../core/errors.js';
import { isNotFound } from '../errors.js';
import type { GetOptions, PutOptions, Store, StoreEntry, StoreSignal, StoreStat } from '../store.js';
import { AbortFanout } from './abort-fanout.js';
import { preferredReadBytes, readIntoVia, type ReadsInto } from './reads-into.js';

export interface RetryOptions {
  /** Attempts per call including the first (default 6). */
  readonly attempts?: number;
  /** Upper bound of the first backoff in ms (default 100); doubles each retry. */
  readonly baseDelayMs?: number;
  /** Cap of a single backoff in ms (default 5000). */
  readonly maxDelayMs?: number;
  /** Called before each backoff (logging, tests). */
  readonly onRetry?: (info: { op: string; key: string; attempt: number; delayMs: number; error: unknown }) => void;
}

const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'EIO', 'EBUSY', 'EAGAIN']);

/** True when repeating the failed call may succeed: flagged retryable, or a network-level error. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof FleeceError) return (err as { retryable?: unknown }).retryable === true;
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && TRANSIENT_CODES.has(code);
}

export class RetryStore implements Store, ReadsInto {
  readonly #inner: Store;
  readonly #fanout = new AbortFanout();
  readonly #attempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onRetry: RetryOptions['onRetry'];

  constructor(inner: Store, options: RetryOptions = {}) {
    this.#inner = inner;
    this.#attempts = Math.max(1, options.attempts ?? 6);
    this.#baseDelayMs = options.baseDelayMs ?? 100;
    this.#maxDelayMs = options.maxDelayMs ?? 5000;
    this.#onRetry = options.onRetry;
  }

  /** Waits before retry number `attempt` (1-based); false when the call should give up instead. */
  async #backoff(op: string, key: string, attempt: number, error: unknown, signal?: AbortSignal): Promise<boolean> {
    // An attempt that failed because (or while) the caller aborted is a cancel, not a store failure.
    if (signal?.aborted && !(error instanceof AbortedError)) throw new AbortedError(`${op} of '${key}' aborted`, { cause: error });
    if (attempt >= this.#attempts || !isRetryable(error) || signal?.aborted) return false;
    const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (attempt - 1));
    const delayMs = Math.round(Math.random() * ceiling);
    this.#onRetry?.({ op, key, attempt, delayMs, error });
    try {
      await sleep(delayMs, undefined, { signal });
    } catch (err) {
      throw new AbortedError(`${op} of '${key}' aborted while waiting to retry`, { cause: err });
    }
    return true;
  }

  /** Runs `call` until it succeeds, fails for good, or `outer` aborts; `call` gets the shared child signal. */
  #retry<T>(op: string, key: string, outer: AbortSignal | undefined, call: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    return this.#fanout.run(outer, async (signal) => {
      for (let attempt = 1; ; attempt++) {
        throwIfAborted(signal);
        try {
          return await call(signal);
        } catch (err) {
          if (!(await this.#backoff(op, key, attempt, err, signal))) throw err;
        }
      }
    });
  }

  put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<{ written: boolean }> {
    let attempts = 0;
    return this.#retry('put', key, options.signal, async (signal) => {
      const first = ++attempts === 1;
      // No onDataReleased: a retry or the compare below reads `data` again.
      const result = await this.#inner.put(key, data, { ifAbsent: options.ifAbsent, signal });
      if (first || result.written || !options.ifAbsent) return result;
      // An earlier attempt failed without an answer; if it had in fact landed, the key holds our bytes.
      const stored = await this.#inner.get(key, { signal }).catch((err: unknown) => {
        if (isNotFound(err)) return undefined; // deleted since: it was not ours to report
        throw err;
      });
      return { written: stored !== undefined && Buffer.compare(stored, data) === 0 };
    });
  }

  get(key: string, options: GetOptions = {}): Promise<Buffer> {
    return this.#retry('get', key, options.signal, (signal) => this.#inner.get(key, { ...options, signal }));
  }

  get preferredReadBytes(): number | undefined {
    return preferredReadBytes(this.#inner);
  }

  /** A failed attempt may have filled part of `target`: the next one overwrites it from the start. */
  readInto(key: string, offset: number, target: Uint8Array, options: StoreSignal = {}): Promise<number> {
    return this.#retry('get', key, options.signal, (signal) => readIntoVia(this.#inner, key, offset, target, { signal }));
  }

  stat(key: string, options: StoreSignal = {}): Promise<StoreStat> {
    return this.#retry('stat', key, options.signal, (signal) => this.#inner.stat(key, { signal }));
  }

  delete(key: string, options: StoreSignal = {}): Promise<void> {
    return this.#retry('delete', key, options.signal, (signal) => this.#inner.delete(key, { signal }));
  }

  /** A listing that fails part-way restarts and skips what it already yielded (each key once). */
  async *list(prefix: string, options: StoreSignal = {}): AsyncIterable<StoreEntry> {
    const seen = new Set<string>();
    const { signal, release } = this.#fanout.acquire(options.signal);
    try {
      for (let attempt = 1; ; attempt++) {
        throwIfAborted(signal);
        try {
          for await (const entry of this.#inner.list(prefix, { signal })) {
            if (seen.has(entry.key)) continue;
            seen.add(entry.key);
            yield entry;
          }
          return;
        } catch (err) {
          if (!(await this.#backoff('list', prefix, attempt, err, signal))) throw err;
        }
      }
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    await this.#inner.close?.();
  }
}
