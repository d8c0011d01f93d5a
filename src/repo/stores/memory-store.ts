// A Store in RAM, for tests and throwaway repositories. Copies on the way in and out so a
// caller mutating its buffer can never change what was stored.

import { throwIfAborted } from '../../core/errors.js';
import { checkKey, notFound, type GetOptions, type PutOptions, type Store, type StoreEntry, type StoreSignal, type StoreStat } from '../store.js';

export class MemoryStore implements Store {
  readonly #objects = new Map<string, { data: Buffer; mtimeMs: number }>();

  async put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<{ written: boolean }> {
    checkKey(key);
    throwIfAborted(options.signal);
    if (options.ifAbsent && this.#objects.has(key)) return { written: false };
    this.#objects.set(key, { data: Buffer.from(data), mtimeMs: Date.now() });
    return { written: true };
  }

  async get(key: string, options: GetOptions = {}): Promise<Buffer> {
    checkKey(key);
    throwIfAborted(options.signal);
    const object = this.#objects.get(key);
    if (!object) throw notFound(key);
    if (!options.range) return Buffer.from(object.data);
    const { offset, length } = options.range;
    return Buffer.from(object.data.subarray(offset, offset + length));
  }

  async stat(key: string, options: StoreSignal = {}): Promise<StoreStat> {
    checkKey(key);
    throwIfAborted(options.signal);
    const object = this.#objects.get(key);
    if (!object) throw notFound(key);
    return { size: object.data.length, mtimeMs: object.mtimeMs };
  }

  async *list(prefix: string, options: StoreSignal = {}): AsyncIterable<StoreEntry> {
    const entries = [...this.#objects].filter(([key]) => key.startsWith(prefix));
    for (const [key, object] of entries) {
      throwIfAborted(options.signal);
      yield { key, size: object.data.length };
    }
  }

  async delete(key: string, options: StoreSignal = {}): Promise<void> {
    checkKey(key);
    throwIfAborted(options.signal);
    this.#objects.delete(key);
  }
}
