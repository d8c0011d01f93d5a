// A local read cache in front of a remote store, for immutable objects read again and again
// (pack indexes). Never the source of truth: only keys the predicate names are cached, each
// file carries a length and CRC and is refetched when damaged; deleting the directory is safe.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { throwIfAborted } from '../../core/errors.js';
import { checkKey, type GetOptions, type PutOptions, type Store, type StoreEntry, type StoreSignal, type StoreStat } from '../store.js';

/** Objects that never change once written: pack indexes (`index/packs/<id>`, content-addressed packs' trailers). */
export function isImmutableSmallObject(key: string): boolean {
  return key.startsWith('index/');
}

export interface CacheOptions {
  /** Which keys are immutable (same key, same bytes, forever) and worth keeping; default pack indexes. */
  readonly cacheable?: (key: string) => boolean;
  /** Larger objects are never cached (default 16 MiB). */
  readonly maxObjectBytes?: number;
}

const MAGIC = Buffer.from('FLC1');
const TRAILER = 12; // magic(4) length(4) crc32(4)

export class CacheStore implements Store {
  readonly dir: string;
  readonly #inner: Store;
  readonly #cacheable: (key: string) => boolean;
  readonly #maxObjectBytes: number;
  #hits = 0;

  constructor(inner: Store, dir: string, options: CacheOptions = {}) {
    this.#inner = inner;
    this.dir = dir;
    this.#cacheable = options.cacheable ?? isImmutableSmallObject;
    this.#maxObjectBytes = options.maxObjectBytes ?? 16 * 2 ** 20;
  }

  /** Reads served from the cache so far. */
  get hits(): number {
    return this.#hits;
  }

  #path(key: string): string {
    checkKey(key);
    return join(this.dir, ...key.split('/'));
  }

  /** The cached bytes, or undefined when absent or damaged (a damaged file is removed). */
  async #read(key: string): Promise<Buffer | undefined> {
    const path = this.#path(key);
    let file: Buffer;
    try {
      file = await readFile(path);
    } catch {
      return undefined;
    }
    const body = file.subarray(0, Math.max(0, file.length - TRAILER));
    const trailer = file.subarray(body.length);
    if (trailer.length !== TRAILER || !trailer.subarray(0, 4).equals(MAGIC) || trailer.readUInt32LE(4) !== body.length || trailer.readUInt32LE(8) !== crc32(body)) {
      await rm(path, { force: true });
      return undefined;
    }
    return body;
  }

  /** Best effort: a cache that cannot be written only costs a refetch. */
  async #write(key: string, data: Uint8Array): Promise<void> {
    if (data.length > this.#maxObjectBytes) return;
    const path = this.#path(key);
    const temp = join(dirname(path), `.tmp-${randomBytes(8).toString('hex')}`);
    const trailer = Buffer.alloc(TRAILER);
    MAGIC.copy(trailer);
    trailer.writeUInt32LE(data.length, 4);
    trailer.writeUInt32LE(crc32(data), 8);
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(temp, Buffer.concat([data, trailer]));
      await rename(temp, path);
    } catch {
      await rm(temp, { force: true });
    }
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<{ written: boolean }> {
    const result = await this.#inner.put(key, data, options);
    if (result.written && this.#cacheable(key)) await this.#write(key, data);
    return result;
  }

  async get(key: string, options: GetOptions = {}): Promise<Buffer> {
    if (!this.#cacheable(key)) return this.#inner.get(key, options);
    throwIfAborted(options.signal);
    const cached = await this.#read(key);
    if (cached) {
      this.#hits++;
      const range = options.range;
      return range ? Buffer.from(cached.subarray(range.offset, range.offset + Math.max(0, range.length))) : cached;
    }
    // A range of an uncached object passes through: fetching all of it could cost far more.
    if (options.range) return this.#inner.get(key, options);
    const data = await this.#inner.get(key, options);
    await this.#write(key, data);
    return data;
  }

  stat(key: string, options?: StoreSignal): Promise<StoreStat> {
    return this.#inner.stat(key, options);
  }

  list(prefix: string, options?: StoreSignal): AsyncIterable<StoreEntry> {
    return this.#inner.list(prefix, options);
  }

  async delete(key: string, options?: StoreSignal): Promise<void> {
    await this.#inner.delete(key, options);
    if (this.#cacheable(key)) await rm(this.#path(key), { force: true });
  }

  async close(): Promise<void> {
    await this.#inner.close?.();
  }
}
