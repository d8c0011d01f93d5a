// Where copy-before-write puts the old data of a cluster: RAM up to a budget, then a spill file
// up to a limit. Full is an answer (put() returns undefined), not an error: the snapshot decides
// whether to break or to make the guest wait (see copy-before-write.ts).

import { randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { throwIfAborted } from '../../core/errors.js';

export type CacheLocation = 'ram' | 'spill';

export interface FleecingCacheOptions {
  /** Bytes per cached cluster (the copy-before-write cluster size). */
  readonly clusterSize: number;
  /** RAM budget in bytes. */
  readonly ramBytes: number;
  /** Directory of the spill file; without one nothing spills. */
  readonly spillDir?: string;
  /** Largest spill file, in bytes. */
  readonly spillMaxBytes?: number;
}

export interface FleecingCacheStats {
  readonly ramBytes: number;
  readonly spillBytes: number;
  readonly clusters: number;
  readonly spillPath: string | undefined;
}

export class FleecingCache {
  readonly clusterSize: number;
  readonly #ramBudget: number;
  readonly #spillDir: string | undefined;
  readonly #spillSlots: number;
  // All state below is touched on the JS thread only; awaits are on the spill file's I/O.
  readonly #ram = new Map<number, Uint8Array>();
  #ramUsed = 0;
  readonly #spilled = new Map<number, { slot: number; length: number }>();
  readonly #freeSlots: number[] = [];
  #nextSlot = 0;
  // Readers per slot: a dropped slot is reused only once its readers are done.
  readonly #slotReaders = new Map<number, number>();
  readonly #pendingFree = new Set<number>();
  #file: Promise<FileHandle> | undefined;
  #spillPath: string | undefined;
  #spaceWaiters: (() => void)[] = [];
  #closed = false;

  constructor(options: FleecingCacheOptions) {
    this.clusterSize = options.clusterSize;
    this.#ramBudget = Math.max(0, options.ramBytes);
    this.#spillDir = options.spillDir;
    this.#spillSlots = options.spillDir ? Math.floor((options.spillMaxBytes ?? 0) / options.clusterSize) : 0;
  }

  get stats(): FleecingCacheStats {
    return {
      ramBytes: this.#ramUsed,
      spillBytes: this.#spilled.size * this.clusterSize,
      clusters: this.#ram.size + this.#spilled.size,
      spillPath: this.#spillPath,
    };
  }

  location(cluster: number): CacheLocation | undefined {
    if (this.#ram.has(cluster)) return 'ram';
    if (this.#spilled.has(cluster)) return 'spill';
    return undefined;
  }

  /** Stores the old data of a cluster (taking ownership of `data`); undefined when full. */
  async put(cluster: number, data: Uint8Array): Promise<CacheLocation | undefined> {
    if (this.#closed) return undefined;
    if (this.#ramUsed + this.clusterSize <= this.#ramBudget) {
      this.#ram.set(cluster, data);
      this.#ramUsed += this.clusterSize;
      return 'ram';
    }
    const slot = this.#takeSlot();
    if (slot === undefined) return undefined;
    // The slot left the free list, so concurrent puts never share it; the cluster becomes
    // visible to readers only once its bytes are in the file.
    try {
      const file = await this.#spillFile();
      await file.write(data, 0, data.length, slot * this.clusterSize);
    } catch (err) {
      this.#freeSlots.push(slot);
      throw err;
    }
    if (this.#closed) return undefined;
    this.#spilled.set(cluster, { slot, length: data.length });
    return 'spill';
  }

  /** Copies [offsetInCluster, +target.length) of a cached cluster; false if not cached. */
  async read(cluster: number, offsetInCluster: number, target: Uint8Array): Promise<boolean> {
    const bytes = this.#ram.get(cluster);
    if (bytes) {
      target.set(bytes.subarray(offsetInCluster, offsetInCluster + target.length));
      return true;
    }
    const spilled = this.#spilled.get(cluster);
    if (!spilled || !this.#file) return false;
    const { slot } = spilled;
    this.#slotReaders.set(slot, (this.#slotReaders.get(slot) ?? 0) + 1);
    try {
      const file = await this.#file;
      await file.read(target, 0, target.length, slot * this.clusterSize + offsetInCluster);
      return true;
    } finally {
      this.#doneReading(slot);
    }
  }

  /** Forgets a cluster and frees its space. */
  drop(cluster: number): void {
    if (this.#ram.delete(cluster)) {
      this.#ramUsed -= this.clusterSize;
    } else {
      const spilled = this.#spilled.get(cluster);
      if (!spilled) return;
      this.#spilled.delete(cluster);
      if (this.#slotReaders.has(spilled.slot)) this.#pendingFree.add(spilled.slot);
      else this.#freeSlots.push(spilled.slot);
    }
    this.#wakeWaiters();
  }

  /** Resolves when a drop may have made room (for the wait-on-full policy). */
  waitForSpace(options: { signal?: AbortSignal } = {}): Promise<void> {
    throwIfAborted(options.signal);
    return new Promise((resolve) => this.#spaceWaiters.push(resolve));
  }

  /** Frees everything and deletes the spill file. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ram.clear();
    this.#ramUsed = 0;
    this.#spilled.clear();
    this.#wakeWaiters();
    const file = this.#file;
    const path = this.#spillPath;
    this.#file = undefined;
    if (file) await (await file.catch(() => undefined))?.close().catch(() => {});
    if (path) await unlink(path).catch(() => {});
  }

  #takeSlot(): number | undefined {
    const reused = this.#freeSlots.pop();
    if (reused !== undefined) return reused;
    if (this.#nextSlot < this.#spillSlots) return this.#nextSlot++;
    return undefined;
  }

  #doneReading(slot: number): void {
    const readers = (this.#slotReaders.get(slot) ?? 1) - 1;
    if (readers > 0) {
      this.#slotReaders.set(slot, readers);
      return;
    }
    this.#slotReaders.delete(slot);
    if (this.#pendingFree.delete(slot)) this.#freeSlots.push(slot);
  }

  #spillFile(): Promise<FileHandle> {
    if (!this.#file) {
      this.#spillPath = join(this.#spillDir!, `fleece-spill-${process.pid}-${randomBytes(6).toString('hex')}.img`);
      this.#file = open(this.#spillPath, 'w+');
    }
    return this.#file;
  }

  #wakeWaiters(): void {
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    for (const wake of waiters) wake();
  }
}
