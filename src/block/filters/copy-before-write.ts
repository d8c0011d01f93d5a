// The copy-before-write filter on a disk's write path. Without snapshots it only counts writes in
// flight; with snapshots, each guest write (or zero, or discard) first lets every snapshot copy
// the old data of the clusters it still protects, then writes in place. Overlapping guest writes
// complete in arrival order. Creating a snapshot quiesces writes so it falls between two requests.

import type { WriteOptions, ZeroOptions } from '../block-device.js';
import { BlockError } from '../errors.js';
import { FilterDevice, thenAlways } from './filter-device.js';
import { RangeTracker, type RangeTicket } from './range-tracker.js';
import { Snapshot, type SnapshotOptions } from './snapshot.js';

export class CopyBeforeWriteDevice extends FilterDevice {
  // Guest writes in flight, in arrival order (overlapping ones wait for earlier ones).
  readonly #writes = new RangeTracker();
  readonly #snapshots = new Map<string, Snapshot>();
  // While set, new writes wait on it (snapshot creation); resolved when the pause ends.
  #gate: Promise<void> | undefined;
  #copies = 0;

  /** Old clusters copied into fleecing caches since this filter was created. */
  get copies(): number {
    return this.#copies;
  }

  get snapshots(): Snapshot[] {
    return [...this.#snapshots.values()];
  }

  snapshot(name: string): Snapshot | undefined {
    return this.#snapshots.get(name);
  }

  /**
   * Creates a snapshot between two guest requests: waits for writes in flight, holds new
   * ones, runs `atPoint` (e.g. to start a bitmap at the same instant), then lets writes go on.
   */
  async createSnapshot(options: SnapshotOptions, atPoint?: () => void | Promise<void>): Promise<Snapshot> {
    if (this.#snapshots.has(options.name)) throw new BlockError('EINVAL', `snapshot '${options.name}' already exists`);
    return this.quiesce(async () => {
      const snapshot = new Snapshot(this.child, options, () => this.#copies++);
      await atPoint?.();
      this.#snapshots.set(snapshot.name, snapshot);
      return snapshot;
    });
  }

  /** Ends a snapshot's copy-before-write at once and frees its cache. */
  async releaseSnapshot(name: string): Promise<void> {
    const snapshot = this.#snapshots.get(name);
    if (!snapshot) throw new BlockError('EINVAL', `no snapshot named '${name}'`);
    this.#snapshots.delete(name);
    await snapshot.release();
  }

  /** Runs fn with no guest write in flight and none starting. */
  async quiesce<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#gate) await this.#gate;
    let open!: () => void;
    this.#gate = new Promise((resolve) => (open = resolve));
    try {
      await this.#writes.waitOverlapping(0, Number.MAX_SAFE_INTEGER);
      return await fn();
    } finally {
      this.#gate = undefined;
      open();
    }
  }

  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const ticket = this.#enterFast(offset, data.length);
    if (ticket) return thenAlways(() => this.child.write(offset, data, options), () => ticket.release());
    return this.#guarded(offset, data.length, () => this.child.write(offset, data, options));
  }

  override writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    const ticket = this.#enterFast(offset, length);
    if (ticket) return thenAlways(() => this.child.writeZeroes(offset, length, options), () => ticket.release());
    return this.#guarded(offset, length, () => this.child.writeZeroes(offset, length, options));
  }

  override discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    const ticket = this.#enterFast(offset, length);
    if (ticket) return thenAlways(() => this.child.discard(offset, length, options), () => ticket.release());
    return this.#guarded(offset, length, () => this.child.discard(offset, length, options));
  }

  /** Releases every snapshot, then closes the child. */
  override async close(): Promise<void> {
    for (const name of [...this.#snapshots.keys()]) await this.releaseSnapshot(name);
    await this.child.close();
  }

  /**
   * The common case, with nothing to wait for or copy (no pause, no snapshot, no overlapping
   * write in flight): registers the write and returns its ticket. Otherwise undefined: take #guarded.
   */
  #enterFast(offset: number, length: number): RangeTicket | undefined {
    if (this.#gate || this.#snapshots.size > 0 || this.#writes.overlaps(offset, offset + length)) return undefined;
    return this.#writes.enter(offset, offset + length);
  }

  async #guarded(offset: number, length: number, io: () => Promise<void>): Promise<void> {
    while (this.#gate) await this.#gate;
    const ready = this.#writes.waitOverlapping(offset, offset + length);
    const ticket = this.#writes.enter(offset, offset + length);
    try {
      if (ready) await ready;
      if (this.#snapshots.size > 0) {
        const snaps = [...this.#snapshots.values()];
        await Promise.all(snaps.map((s) => s.beforeWrite(offset, length)));
      }
      await io();
    } finally {
      ticket.release();
    }
  }
}

