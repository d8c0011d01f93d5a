// The base of every pass-through filter (nbdkit's rule: what a filter leaves out goes straight to
// the next layer). Each method forwards to the child unchanged, so a filter overrides only what
// it changes and a method added to BlockDevice later reaches the child without touching filters.

import type { BlockCapabilities, BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../block-device.js';

export abstract class FilterDevice implements BlockDevice {
  /** The device below; a filter never changes what its data means. */
  protected readonly child: BlockDevice;

  constructor(child: BlockDevice) {
    this.child = child;
  }

  get size(): number {
    return this.child.size;
  }

  get capabilities(): BlockCapabilities {
    return this.child.capabilities;
  }

  read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    return this.child.read(offset, target, options);
  }

  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.child.write(offset, data, options);
  }

  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.child.writeZeroes(offset, length, options);
  }

  discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.child.discard(offset, length, options);
  }

  flush(options?: IoOptions): Promise<void> {
    return this.child.flush(options);
  }

  cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    return this.child.cache(offset, length, options);
  }

  blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    return this.child.blockStatus(offset, length, options);
  }

  close(): Promise<void> {
    return this.child.close();
  }
}

/**
 * Runs `io` now and `after` once it settles either way (or throws synchronously), passing its
 * outcome on; no async frame of its own, so filters on the guest write path stay cheap.
 */
export function thenAlways(io: () => Promise<void>, after: () => void): Promise<void> {
  let pending: Promise<void>;
  try {
    pending = io();
  } catch (error) {
    pending = Promise.reject(error);
  }
  return pending.then(after, (error: unknown) => {
    after();
    throw error;
  });
}
