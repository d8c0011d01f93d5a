// Caps how many requests a store has in flight; the rest wait in FIFO order. Object stores
// throttle (503 SlowDown) or slow down past a few dozen parallel requests per client, and a
// local disk gains nothing from hundreds of concurrent writes.

import { AbortedError, throwIfAborted } from '../../core/errors.js';
import type { GetOptions, PutOptions, Store, StoreEntry, StoreSignal, StoreStat } from '../store.js';
import { preferredReadBytes, readIntoVia, type ReadsInto } from './reads-into.js';

export class LimitStore implements Store, ReadsInto {
  readonly #inner: Store;
  readonly #limit: number;
  // Protected by the event loop: changed only between awaits.
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(inner: Store, limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`invalid concurrency limit ${limit}: expected an integer ≥ 1`);
    this.#inner = inner;
    this.#limit = limit;
  }

  /** Requests running right now (tests assert it never exceeds the limit). */
  get active(): number {
    return this.#active;
  }

  async #acquire(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    if (this.#active < this.#limit) {
      this.#active++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const at = this.#waiting.indexOf(grant);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(new AbortedError('store request aborted while waiting for a free slot', { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else this.#active--;
  }

  async #run<T>(signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    await this.#acquire(signal);
    try {
      return await call();
    } finally {
      this.#release();
    }
  }

  put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<{ written: boolean }> {
    return this.#run(options.signal, () => this.#inner.put(key, data, options));
  }

  get(key: string, options: GetOptions = {}): Promise<Buffer> {
    return this.#run(options.signal, () => this.#inner.get(key, options));
  }

  get preferredReadBytes(): number | undefined {
    return preferredReadBytes(this.#inner);
  }

  readInto(key: string, offset: number, target: Uint8Array, options: StoreSignal = {}): Promise<number> {
    return this.#run(options.signal, () => readIntoVia(this.#inner, key, offset, target, options));
  }

  stat(key: string, options: StoreSignal = {}): Promise<StoreStat> {
    return this.#run(options.signal, () => this.#inner.stat(key, options));
  }

  delete(key: string, options: StoreSignal = {}): Promise<void> {
    return this.#run(options.signal, () => this.#inner.delete(key, options));
  }

  /** Holds a slot only while the inner listing fetches, never while the caller consumes. */
  async *list(prefix: string, options: StoreSignal = {}): AsyncIterable<StoreEntry> {
    const iterator = this.#inner.list(prefix, options)[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        const next = await this.#run(options.signal, () => iterator.next());
        if (next.done) {
          finished = true;
          return;
        }
        yield next.value;
      }
    } finally {
      if (!finished) await iterator.return?.();
    }
  }

  async close(): Promise<void> {
    await this.#inner.close?.();
  }
}
