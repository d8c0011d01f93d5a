// A filter that records which clusters change: after each write, write-zeroes or discard (even a
// failed one, whose range may be half written) it marks the range in every enabled bitmap.

import type { BlockCapabilities, BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../block-device.js';
import type { BitmapSet } from '../bitmap/bitmap-set.js';

export class DirtyTrackerDevice implements BlockDevice {
  readonly #child: BlockDevice;
  readonly bitmaps: BitmapSet;

  constructor(child: BlockDevice, bitmaps: BitmapSet) {
    this.#child = child;
    this.bitmaps = bitmaps;
  }

  get size(): number {
    return this.#child.size;
  }

  get capabilities(): BlockCapabilities {
    return this.#child.capabilities;
  }

  read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    return this.#child.read(offset, target, options);
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    try {
      await this.#child.write(offset, data, options);
    } finally {
      this.bitmaps.markDirty(offset, data.length);
    }
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    try {
      await this.#child.writeZeroes(offset, length, options);
    } finally {
      this.bitmaps.markDirty(offset, length);
    }
  }

  async discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    try {
      await this.#child.discard(offset, length, options);
    } finally {
      // Discarded content is unspecified afterwards: a backup must re-read it.
      this.bitmaps.markDirty(offset, length);
    }
  }

  flush(options?: IoOptions): Promise<void> {
    return this.#child.flush(options);
  }

  cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    return this.#child.cache(offset, length, options);
  }

  blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    return this.#child.blockStatus(offset, length, options);
  }

  close(): Promise<void> {
    return this.#child.close();
  }
}
