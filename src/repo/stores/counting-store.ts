// Counts the requests and bytes that pass through to a store: the S3 benchmark's "requests per
// GiB" and tests that assert a cache or a dedup really saved round trips. Placed inside
// RetryStore it counts every attempt, outside it every logical call.

import type { GetOptions, PutOptions, Store, StoreEntry, StoreSignal, StoreStat } from '../store.js';
import { preferredReadBytes, readIntoVia, type ReadsInto } from './reads-into.js';

/** Keys an S3 ListObjectsV2 page returns at most; one list request per started page. */
export const LIST_PAGE_KEYS = 1000;

export interface StoreCounts {
  put: number;
  get: number;
  stat: number;
  /** List requests: one per started page of LIST_PAGE_KEYS keys. */
  list: number;
  delete: number;
  /** Failed calls, of any kind. */
  errors: number;
  bytesWritten: number;
  bytesRead: number;
}

export function emptyCounts(): StoreCounts {
  return { put: 0, get: 0, stat: 0, list: 0, delete: 0, errors: 0, bytesWritten: 0, bytesRead: 0 };
}

export function requestCount(counts: StoreCounts): number {
  return counts.put + counts.get + counts.stat + counts.list + counts.delete;
}

/** `op area` of a request, the area being a key's first segment: 'put packs', 'list manifests'. */
function requestKind(op: string, key: string): string {
  const slash = key.indexOf('/');
  return `${op} ${slash < 0 ? key || '(root)' : key.slice(0, slash)}`;
}

export class CountingStore implements Store, ReadsInto {
  readonly #inner: Store;
  #counts = emptyCounts();
  // Requests by kind (see requestKind), reset with the counts.
  #byKind = new Map<string, number>();

  constructor(inner: Store) {
    this.#inner = inner;
  }

  /** A snapshot of the counts so far. */
  get counts(): Readonly<StoreCounts> {
    return { ...this.#counts };
  }

  /** Requests so far by operation and key area, e.g. `{ 'put packs': 33, 'get leases': 1 }`. */
  get byKind(): Record<string, number> {
    return Object.fromEntries([...this.#byKind].sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  /** Returns the counts so far and starts again from zero (the breakdown too). */
  reset(): StoreCounts {
    const counts = this.#counts;
    this.#counts = emptyCounts();
    this.#byKind = new Map();
    return counts;
  }

  #tally(op: string, key: string): void {
    const kind = requestKind(op, key);
    this.#byKind.set(kind, (this.#byKind.get(kind) ?? 0) + 1);
  }

  async #count<T>(op: 'put' | 'get' | 'stat' | 'delete', key: string, call: () => Promise<T>): Promise<T> {
    this.#counts[op]++;
    this.#tally(op, key);
    try {
      return await call();
    } catch (err) {
      this.#counts.errors++;
      throw err;
    }
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<{ written: boolean }> {
    const result = await this.#count('put', key, () => this.#inner.put(key, data, options));
    this.#counts.bytesWritten += data.length;
    return result;
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    const data = await this.#count('get', key, () => this.#inner.get(key, options));
    this.#counts.bytesRead += data.length;
    return data;
  }

  get preferredReadBytes(): number | undefined {
    return preferredReadBytes(this.#inner);
  }

  /** Counted as a get, like the ranged GET it is. */
  async readInto(key: string, offset: number, target: Uint8Array, options?: StoreSignal): Promise<number> {
    const n = await this.#count('get', key, () => readIntoVia(this.#inner, key, offset, target, options));
    this.#counts.bytesRead += n;
    return n;
  }

  stat(key: string, options?: StoreSignal): Promise<StoreStat> {
    return this.#count('stat', key, () => this.#inner.stat(key, options));
  }

  delete(key: string, options?: StoreSignal): Promise<void> {
    return this.#count('delete', key, () => this.#inner.delete(key, options));
  }

  async *list(prefix: string, options?: StoreSignal): AsyncIterable<StoreEntry> {
    this.#counts.list++;
    this.#tally('list', prefix);
    let n = 0;
    try {
      for await (const entry of this.#inner.list(prefix, options)) {
        if (++n % LIST_PAGE_KEYS === 1 && n > 1) {
          this.#counts.list++;
          this.#tally('list', prefix);
        }
        yield entry;
      }
    } catch (err) {
      this.#counts.errors++;
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#inner.close?.();
  }
}
