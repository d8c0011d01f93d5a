// A read-only BlockDevice over one backup in a repository: chunks are fetched lazily when a
// read touches them (a small LRU keeps the recent ones, concurrent readers share a fetch) and
// zero slots read as zeroes for free and report as hole+zero, so NBD clients copy sparsely.

import { BackupSlots } from '../../repo/backup-slots.js';
import type { Manifest } from '../../repo/manifest.js';
import type { Repository } from '../../repo/repository.js';
import { AbortedError, describeError } from '../../core/errors.js';
import { READ_ONLY_CAPABILITIES, type BlockCapabilities, type BlockDevice, type Extent, type IoOptions } from '../block-device.js';
import { BlockError, checkRange } from '../errors.js';

export interface BackupDeviceOptions {
  /** Bytes of decoded chunks kept in memory (at least two chunks). */
  readonly cacheBytes?: number;
  readonly signal?: AbortSignal;
}

/** Most slots one blockStatus call walks; callers loop for the rest. */
const MAX_STATUS_SLOTS = 64 * 1024;

export class BackupDevice implements BlockDevice {
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  readonly manifest: Manifest;
  readonly #slots: BackupSlots;
  readonly #chunkSize: number;
  readonly #cacheEntries: number;
  // Chunk fetches by id (hex), oldest first; a hit moves the entry to the end.
  readonly #cache = new Map<string, Promise<Buffer>>();
  #closed = false;

  private constructor(slots: BackupSlots, options: BackupDeviceOptions) {
    this.#slots = slots;
    this.manifest = slots.manifest;
    this.size = slots.manifest.size;
    this.#chunkSize = slots.manifest.chunkSize;
    this.#cacheEntries = Math.max(2, Math.floor((options.cacheBytes ?? 64 * 1024 * 1024) / this.#chunkSize));
    this.capabilities = { ...READ_ONLY_CAPABILITIES, preferredBlockSize: this.#chunkSize };
  }

  /** Opens a backup for reading (reads only its index root now). */
  static async open(repo: Repository, manifest: Manifest, options: BackupDeviceOptions = {}): Promise<BackupDevice> {
    return new BackupDevice(await BackupSlots.open(repo, manifest, options), options);
  }

  async read(offset: number, target: Uint8Array, options: IoOptions = {}): Promise<void> {
    this.#check(offset, target.length, 'read', options);
    const first = Math.floor(offset / this.#chunkSize);
    const last = Math.floor((offset + target.length - 1) / this.#chunkSize);
    const parts: Promise<void>[] = [];
    for (let slot = first; slot <= last && target.length > 0; slot++) {
      parts.push(
        this.#slot(slot, options.signal).then((chunk) => {
          const start = Math.max(offset, slot * this.#chunkSize);
          const end = Math.min(offset + target.length, (slot + 1) * this.#chunkSize);
          const within = start - slot * this.#chunkSize;
          if (chunk) target.set(chunk.subarray(within, within + end - start), start - offset);
          else target.fill(0, start - offset, end - offset);
        }),
      );
    }
    const results = await Promise.allSettled(parts);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  async write(offset: number, data: Uint8Array, options: IoOptions = {}): Promise<void> {
    this.#refuse(offset, data.length, 'write', options);
  }

  async writeZeroes(offset: number, length: number, options: IoOptions = {}): Promise<void> {
    this.#refuse(offset, length, 'write-zeroes', options);
  }

  async discard(offset: number, length: number, options: IoOptions = {}): Promise<void> {
    this.#refuse(offset, length, 'discard', options);
  }

  async flush(options: IoOptions = {}): Promise<void> {
    this.#check(0, 0, 'flush', options);
  }

  async cache(offset: number, length: number, options: IoOptions = {}): Promise<void> {
    this.#check(offset, length, 'cache', options);
  }

  async blockStatus(offset: number, length: number, options: IoOptions = {}): Promise<Extent[]> {
    this.#check(offset, length, 'block-status', options);
    const end = offset + length;
    const extents: Extent[] = [];
    let slot = Math.floor(offset / this.#chunkSize);
    for (let walked = 0; walked < MAX_STATUS_SLOTS && slot * this.#chunkSize < end; walked++, slot++) {
      const zero = BackupSlots.isZero(await this.#id(slot, options.signal));
      const start = Math.max(offset, slot * this.#chunkSize);
      const stop = Math.min(end, (slot + 1) * this.#chunkSize);
      const last = extents[extents.length - 1];
      if (last && last.zero === zero) extents[extents.length - 1] = { ...last, length: stop - last.offset };
      else extents.push({ offset: start, length: stop - start, hole: zero, zero });
    }
    return extents.length > 0 ? extents : [{ offset, length, hole: false, zero: false }];
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cache.clear();
  }

  /** The slot's chunk, or undefined for a zero slot. */
  async #slot(slot: number, signal: AbortSignal | undefined): Promise<Buffer | undefined> {
    const id = await this.#id(slot, signal);
    if (BackupSlots.isZero(id)) return undefined;
    const key = id.toString('hex');
    let chunk = this.#cache.get(key);
    if (chunk) this.#cache.delete(key);
    else {
      // Shared by every reader of this chunk, so one reader's abort must not cancel it.
      chunk = this.#slots.chunk(slot, id).catch((err: unknown) => {
        this.#cache.delete(key);
        throw new BlockError('EIO', `backup ${this.manifest.id}: slot ${slot}: ${describeError(err)}`, { cause: err });
      });
    }
    this.#cache.set(key, chunk);
    if (this.#cache.size > this.#cacheEntries) this.#cache.delete(this.#cache.keys().next().value!);
    return chunk;
  }

  async #id(slot: number, signal: AbortSignal | undefined): Promise<Buffer> {
    try {
      return await this.#slots.id(slot, { signal });
    } catch (err) {
      throw new BlockError('EIO', `backup ${this.manifest.id}: index of slot ${slot}: ${describeError(err)}`, { cause: err });
    }
  }

  #check(offset: number, length: number, what: string, options: IoOptions): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `${what}: backup device is closed`);
    if (options.signal?.aborted) throw new AbortedError('operation aborted', { cause: options.signal.reason });
    checkRange(this.size, offset, length, what);
  }

  #refuse(offset: number, length: number, what: string, options: IoOptions): void {
    this.#check(offset, length, what, options);
    throw new BlockError('EPERM', `${what}: backup ${this.manifest.id} is read-only`);
  }
}
