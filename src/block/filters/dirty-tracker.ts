// A filter that records which clusters change: after each write, write-zeroes or discard (even a
// failed one, whose range may be half written) it marks the range in every enabled bitmap.
// Every guest write passes here, so the path adds no async frame: it chains onto the child's promise.

import type { BlockDevice, WriteOptions, ZeroOptions } from '../block-device.js';
import type { BitmapSet } from '../bitmap/bitmap-set.js';
import { FilterDevice, thenAlways } from './filter-device.js';

export class DirtyTrackerDevice extends FilterDevice {
  readonly bitmaps: BitmapSet;

  constructor(child: BlockDevice, bitmaps: BitmapSet) {
    super(child);
    this.bitmaps = bitmaps;
  }

  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.#marking(offset, data.length, () => this.child.write(offset, data, options));
  }

  override writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.#marking(offset, length, () => this.child.writeZeroes(offset, length, options));
  }

  // Discarded content is unspecified afterwards: a backup must re-read it.
  override discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.#marking(offset, length, () => this.child.discard(offset, length, options));
  }

  /** Runs io now and marks the range once it settles, either way (a failed write may be half done). */
  #marking(offset: number, length: number, io: () => Promise<void>): Promise<void> {
    const bitmaps = this.bitmaps;
    return thenAlways(io, () => bitmaps.markDirty(offset, length));
  }
}
