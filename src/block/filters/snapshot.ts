// A point-in-time view of a disk: which clusters it still protects, the fleecing cache holding
// old data of clusters overwritten since, and the copy engine that moves a cluster's old data
// into the cache before a guest write lands (the filter in copy-before-write.ts calls it; reads
// go through snapshot-access.ts). Broken or released snapshots never serve wrong data: reads fail.

import { DirtyBitmap } from '../bitmap/dirty-bitmap.js';
import type { BlockDevice } from '../block-device.js';
import { BlockError } from '../errors.js';
import { FleecingCache, type CacheLocation } from '../fleecing/fleecing-cache.js';
import { RangeTracker, type RangeTicket } from './range-tracker.js';

export const DEFAULT_CLUSTER_SIZE = 64 * 1024;

/** What to do when the RAM cache and the spill file are both full. */
export type CacheFullPolicy = 'break-snapshot' | 'wait';

export interface SnapshotOptions {
  readonly name: string;
  readonly clusterSize?: number;
  /** Protect only the clusters dirty in this bitmap (an incremental backup's view). */
  readonly bitmap?: DirtyBitmap;
  readonly ramBytes?: number;
  readonly spillDir?: string;
  readonly spillMaxBytes?: number;
  readonly onFull?: CacheFullPolicy;
}

export interface SnapshotStats {
  readonly name: string;
  readonly clusterSize: number;
  readonly copies: number;
  readonly broken: string | undefined;
  readonly released: boolean;
  readonly protectedBytes: number;
  readonly accessibleBytes: number;
  readonly cache: FleecingCache['stats'];
}

export class Snapshot {
  readonly name: string;
  readonly clusterSize: number;
  readonly size: number;
  readonly createdAt = new Date();
  readonly #child: BlockDevice;
  readonly #cache: FleecingCache;
  readonly #onFull: CacheFullPolicy;
  // Clusters readable through the snapshot, and those of them not yet copied (still to protect).
  readonly #access: DirtyBitmap;
  readonly #protect: DirtyBitmap;
  // Per-cluster copy in flight: a cluster is copied at most once; others wait on this promise.
  readonly #copying = new Map<number, Promise<void>>();
  // Snapshot reads of live (not yet copied) clusters: guest writes wait for them.
  readonly #liveReaders = new RangeTracker();
  #copies = 0;
  #broken: string | undefined;
  #released = false;
  readonly #onCopy: () => void;

  /** Call only while guest writes are quiesced (CopyBeforeWriteDevice.createSnapshot). */
  constructor(child: BlockDevice, options: SnapshotOptions, onCopy: () => void = () => {}) {
    this.name = options.name;
    this.clusterSize = options.clusterSize ?? DEFAULT_CLUSTER_SIZE;
    this.size = child.size;
    this.#child = child;
    this.#onFull = options.onFull ?? 'break-snapshot';
    this.#onCopy = onCopy;
    this.#cache = new FleecingCache({
      clusterSize: this.clusterSize,
      ramBytes: options.ramBytes ?? 256 * 2 ** 20,
      spillDir: options.spillDir,
      spillMaxBytes: options.spillMaxBytes ?? 0,
    });
    this.#access = new DirtyBitmap('access', this.size, { granularity: this.clusterSize });
    if (options.bitmap) {
      options.bitmap.assertConsistent('create a snapshot from it');
      for (const e of options.bitmap.extents()) if (e.dirty) this.#access.set(e.offset, e.length);
    } else {
      this.#access.set(0, this.size);
    }
    this.#protect = this.#access.clone('protect');
  }

  get broken(): string | undefined {
    return this.#broken;
  }

  get released(): boolean {
    return this.#released;
  }

  get stats(): SnapshotStats {
    return {
      name: this.name,
      clusterSize: this.clusterSize,
      copies: this.#copies,
      broken: this.#broken,
      released: this.#released,
      protectedBytes: this.#protect.dirtyBytes,
      accessibleBytes: this.#access.dirtyBytes,
      cache: this.#cache.stats,
    };
  }

  /** The clusters still readable, as a bitmap (for block status and tests). */
  get accessBitmap(): DirtyBitmap {
    return this.#access;
  }

  /**
   * Copies the old data of every protected cluster touching [offset, offset+length) into the
   * cache, then waits for snapshot reads still reading those bytes from the live disk.
   */
  async beforeWrite(offset: number, length: number): Promise<void> {
    if (this.#broken || this.#released || length === 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    let pending: Promise<void>[] | undefined;
    for (let c = first; c <= last; c++) {
      const inFlight = this.#copying.get(c);
      if (inFlight) (pending ??= []).push(inFlight);
      else if (this.#protect.isDirty(c * this.clusterSize, 1)) {
        const copy = this.#copy(c).finally(() => this.#copying.delete(c));
        this.#copying.set(c, copy);
        (pending ??= []).push(copy);
      }
    }
    if (pending) await Promise.all(pending);
    if (this.#broken || this.#released) return;
    await this.#liveReaders.waitOverlapping(first * this.clusterSize, (last + 1) * this.clusterSize);
  }

  /** Where a cluster's snapshot data lives now: the cache, the live disk, or nowhere. */
  locate(cluster: number): CacheLocation | 'live' | 'none' {
    const cached = this.#cache.location(cluster);
    if (cached) return cached;
    return this.#protect.isDirty(cluster * this.clusterSize, 1) ? 'live' : 'none';
  }

  /** The run from `offset` (before `end`) whose clusters are all live, or all not live. */
  liveRun(offset: number, end: number): { live: boolean; end: number } {
    const first = this.#protect.extents(offset, end - offset).next();
    if (first.done) return { live: false, end };
    // Protection is per cluster, so a run ends on a cluster boundary (or at `end`).
    return { live: first.value.dirty, end: first.value.offset + first.value.length };
  }

  /** Reads part of a cached cluster; false if it left the cache meanwhile. */
  readCached(cluster: number, offsetInCluster: number, target: Uint8Array): Promise<boolean> {
    return this.#cache.read(cluster, offsetInCluster, target);
  }

  /** Claims live bytes for a snapshot read; guest writes to them wait until released. */
  claimLive(start: number, end: number): RangeTicket {
    return this.#liveReaders.enter(start, end);
  }

  /** Throws EIO if the snapshot broke or was released (checked after every read). */
  assertUsable(what: string): void {
    if (this.#released) throw new BlockError('ESHUTDOWN', `${what}: snapshot '${this.name}' was released`);
    if (this.#broken) throw new BlockError('EIO', `${what}: snapshot '${this.name}' is broken: ${this.#broken}`);
  }

  /** Stops protecting the clusters wholly inside the range and frees their cache space. */
  drop(offset: number, length: number): void {
    const first = Math.ceil(offset / this.clusterSize);
    const end = Math.min(offset + length, this.size);
    const last = end === this.size ? Math.ceil(end / this.clusterSize) - 1 : Math.floor(end / this.clusterSize) - 1;
    for (let c = first; c <= last; c++) {
      const at = c * this.clusterSize;
      this.#access.reset(at, 1);
      this.#protect.reset(at, 1);
      this.#cache.drop(c);
    }
  }

  /** Gives up the point-in-time view (cache full, copy failed); guest writes go on. */
  break(reason: string): void {
    if (this.#broken || this.#released) return;
    this.#broken = reason;
    this.#protect.clearAll();
    void this.#cache.close();
  }

  /** Ends copy-before-write for good and deletes the cache (RAM and spill file). */
  async release(): Promise<void> {
    this.#released = true;
    this.#protect.clearAll();
    await this.#cache.close();
  }

  async #copy(cluster: number): Promise<void> {
    const at = cluster * this.clusterSize;
    const data = Buffer.allocUnsafe(Math.min(this.clusterSize, this.size - at));
    try {
      await this.#child.read(at, data);
      for (;;) {
        if (this.#broken || this.#released || !this.#protect.isDirty(at, 1)) return;
        const where = await this.#cache.put(cluster, data);
        if (where) break;
        if (this.#onFull === 'break-snapshot') {
          this.break(`fleecing cache full (cluster ${cluster})`);
          return;
        }
        await this.#cache.waitForSpace();
      }
    } catch (err) {
      this.break(`copy of cluster ${cluster} failed: ${(err as Error).message}`);
      return;
    }
    this.#protect.reset(at, 1);
    this.#copies++;
    this.#onCopy();
    // A reader may have dropped the cluster while we stored it.
    if (!this.#access.isDirty(at, 1)) this.#cache.drop(cluster);
  }
}
