// A filter that records which clusters change: after each write, write-zeroes or discard (even a
// failed one, whose range may be half written) it marks the range in every enabled bitmap.

import type { BlockDevice, WriteOptions, ZeroOptions } from '../block-device.js';
import type { BitmapSet } from '../bitmap/bitmap-set.js';
import { FilterDevice } from './filter-device.js';

export class DirtyTrackerDevice extends FilterDevice {
  readonly bitmaps: BitmapSet;

  constructor(child: BlockDevice, bitmaps: BitmapSet) {
    super(child);
    this.bitmaps = bitmaps;
  }

  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    try {
      await this.child.write(offset, data, options);
    } finally {
      this.bitmaps.markDirty(offset, data.length);
    }
  }

  override async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    try {
      await this.child.writeZeroes(offset, length, options);
    } finally {
      this.bitmaps.markDirty(offset, length);
    }
  }

  override async discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    try {
      await this.child.discard(offset, length, options);
    } finally {
      // Discarded content is unspecified afterwards: a backup must re-read it.
      this.bitmaps.markDirty(offset, length);
    }
  }
}
