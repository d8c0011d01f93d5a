// The read-only face of a snapshot: clusters already copied come from the fleecing cache, the
// others from the live disk, claimed so that no guest write lands on them mid-read. Read-once
// mode and drop() release clusters the reader is done with, freeing cache space.

import { READ_ONLY_CAPABILITIES, type BlockCapabilities, type BlockDevice, type Extent, type IoOptions, type WriteOptions } from '../block-device.js';
import { throwIfAborted } from '../../core/errors.js';
import { BlockError, checkRange } from '../errors.js';
import { IoLimiter } from './io-limiter.js';
import type { RangeTicket } from './range-tracker.js';
import type { Snapshot } from './snapshot.js';

export interface SnapshotAccessOptions {
  /** Every successful read drops the clusters it covered wholly. */
  readonly readOnce?: boolean;
  /** Snapshot reads executing at once; the rest queue in order (default 32: a backup reading scattered clusters of a cold disk needs a deep queue, and the pool has 16 threads). */
  readonly maxReadsInFlight?: number;
}

/** Flags of the `fleece:cache-location` metadata context. */
export const LOCATION_LIVE = 0;
export const LOCATION_RAM = 1;
export const LOCATION_SPILL = 2;
/** Not readable: outside the snapshot's bitmap, dropped, or the snapshot broke. */
export const LOCATION_NONE = 4;

export interface LocationExtent {
  readonly length: number;
  readonly flags: number;
}

export class SnapshotAccessDevice implements BlockDevice {
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  readonly snapshot: Snapshot;
  readonly #live: BlockDevice;
  readonly #readOnce: boolean;
  readonly #limiter: IoLimiter;
  #closed = false;

  constructor(snapshot: Snapshot, live: BlockDevice, options: SnapshotAccessOptions = {}) {
    this.snapshot = snapshot;
    this.#live = live;
    this.size = snapshot.size;
    this.#readOnce = options.readOnce ?? false;
    this.#limiter = new IoLimiter(options.maxReadsInFlight ?? 32);
    this.capabilities = { ...READ_ONLY_CAPABILITIES, preferredBlockSize: Math.min(snapshot.clusterSize, 2 ** 20) };
  }

  async read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    this.#check('read', offset, target.length, options);
    await this.#limiter.run(() => this.#read(offset, target, options));
  }

  async #read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    this.#check('read', offset, target.length, options);
    const snap = this.snapshot;
    const cs = snap.clusterSize;
    const cached: Promise<boolean>[] = [];
    const tickets: RangeTicket[] = [];
    const live: Promise<void>[] = [];
    let runStart = -1;
    const flushRun = (end: number): void => {
      if (runStart < 0) return;
      const start = runStart;
      runStart = -1;
      tickets.push(snap.claimLive(start, end));
      live.push(this.#live.read(start, target.subarray(start - offset, end - offset), options));
    };
    // Decide every cluster's source synchronously, so no guest write slips between decision and claim.
    try {
      for (let at = offset; at < offset + target.length; ) {
        const cluster = Math.floor(at / cs);
        const end = Math.min((cluster + 1) * cs, offset + target.length);
        const where = snap.locate(cluster);
        if (where === 'live') {
          if (runStart < 0) runStart = at;
        } else {
          flushRun(at);
          if (where === 'none') {
            snap.assertUsable('read');
            throw new BlockError('EIO', `read: offset ${at} is not part of snapshot '${snap.name}' (outside its bitmap or already dropped)`);
          }
          cached.push(snap.readCached(cluster, at - cluster * cs, target.subarray(at - offset, end - offset)));
        }
        at = end;
      }
      flushRun(offset + target.length);
      const [hits] = await Promise.all([Promise.all(cached), Promise.all(live)]);
      if (hits.includes(false)) throw new BlockError('EIO', `read: part of ${offset}+${target.length} left snapshot '${snap.name}' during the read`);
    } finally {
      for (const t of tickets) t.release();
    }
    snap.assertUsable('read');
    if (this.#readOnce) snap.drop(offset, target.length);
  }

  async write(): Promise<void> {
    throw new BlockError('EPERM', 'write: snapshots are read-only');
  }

  async writeZeroes(): Promise<void> {
    throw new BlockError('EPERM', 'write-zeroes: snapshots are read-only');
  }

  async discard(): Promise<void> {
    throw new BlockError('EPERM', 'discard: snapshots are read-only (use drop)');
  }

  /** The reader is done with the range: stop protecting its whole clusters and free their cache. */
  async drop(offset: number, length: number, options?: WriteOptions): Promise<void> {
    this.#check('drop', offset, length, options);
    this.snapshot.drop(offset, length);
  }

  async flush(): Promise<void> {}

  async cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    this.#check('cache', offset, length, options);
  }

  /** Cached and unreadable ranges are data; live ranges report the disk's allocation. */
  async blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    this.#check('block-status', offset, length, options);
    const snap = this.snapshot;
    const first = snap.liveRun(offset, Math.min(offset + length, this.size));
    if (first.live) {
      const ticket = snap.claimLive(offset, first.end);
      try {
        const extents = await this.#live.blockStatus(offset, first.end - offset, options);
        snap.assertUsable('block-status');
        return extents;
      } finally {
        ticket.release();
      }
    }
    return [{ offset, length: first.end - offset, hole: false, zero: false }];
  }

  /** Where each range of the snapshot's data lives: flags LOCATION_*. */
  location(offset: number, length: number): LocationExtent[] {
    const snap = this.snapshot;
    const cs = snap.clusterSize;
    const end = Math.min(offset + length, this.size);
    const out: LocationExtent[] = [];
    for (let at = offset; at < end; ) {
      const cluster = Math.floor(at / cs);
      const stop = Math.min((cluster + 1) * cs, end);
      const where = snap.broken || snap.released ? 'none' : snap.locate(cluster);
      const flags = where === 'ram' ? LOCATION_RAM : where === 'spill' ? LOCATION_SPILL : where === 'live' ? LOCATION_LIVE : LOCATION_NONE;
      const last = out[out.length - 1];
      if (last && last.flags === flags) out[out.length - 1] = { length: last.length + stop - at, flags };
      else out.push({ length: stop - at, flags });
      at = stop;
    }
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #check(what: string, offset: number, length: number, options: IoOptions | undefined): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `${what}: device is closed`);
    throwIfAborted(options?.signal);
    this.snapshot.assertUsable(what);
    checkRange(this.size, offset, length, what);
  }
}
