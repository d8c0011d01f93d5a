// A sparse RAM disk for tests and `fleece serve --memory`: pages are allocated on first
// write and freed by discard/zero, so a 1 TiB memory device costs only what was written.

import {
  DEFAULT_CAPABILITIES,
  type BlockCapabilities,
  type BlockDevice,
  type Extent,
  type IoOptions,
  type WriteOptions,
  type ZeroOptions,
} from '../block-device.js';
import { throwIfAborted } from '../../core/errors.js';
import { BlockError, checkRange } from '../errors.js';

const PAGE_SIZE = 64 * 1024;

export interface MemoryDeviceOptions {
  readonly readOnly?: boolean;
}

export class MemoryDevice implements BlockDevice {
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  // Page index -> page bytes; an absent page reads as zero. Single-threaded: no lock needed.
  readonly #pages = new Map<number, Buffer>();
  #closed = false;

  constructor(size: number, options: MemoryDeviceOptions = {}) {
    if (!Number.isSafeInteger(size) || size < 0) throw new BlockError('EINVAL', `invalid device size ${size}`);
    this.size = size;
    this.capabilities = { ...DEFAULT_CAPABILITIES, readOnly: options.readOnly ?? false, canFlush: false, canFua: false };
  }

  /** Bytes of RAM holding data (for tests asserting that zeroing frees pages). */
  get allocatedBytes(): number {
    return this.#pages.size * PAGE_SIZE;
  }

  async read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    this.#check('read', offset, target.length, false, options);
    this.#forEachPage(offset, target.length, (page, pageOffset, length, done) => {
      const bytes = this.#pages.get(page);
      if (bytes) target.set(bytes.subarray(pageOffset, pageOffset + length), done);
      else target.fill(0, done, done + length);
    });
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.#check('write', offset, data.length, true, options);
    this.#forEachPage(offset, data.length, (page, pageOffset, length, done) => {
      let bytes = this.#pages.get(page);
      if (!bytes) {
        bytes = Buffer.alloc(PAGE_SIZE);
        this.#pages.set(page, bytes);
      }
      bytes.set(data.subarray(done, done + length), pageOffset);
    });
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.#check('write-zeroes', offset, length, true, options);
    this.#zero(offset, length);
  }

  async discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    this.#check('discard', offset, length, true, options);
    this.#zero(offset, length);
  }

  async flush(options?: IoOptions): Promise<void> {
    this.#check('flush', 0, 0, false, options);
  }

  async cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    this.#check('cache', offset, length, false, options);
  }

  async blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    this.#check('block-status', offset, length, false, options);
    const extents: Extent[] = [];
    this.#forEachPage(offset, length, (page, _pageOffset, len, done) => {
      const hole = !this.#pages.has(page);
      const last = extents[extents.length - 1];
      if (last && last.hole === hole) extents[extents.length - 1] = { ...last, length: last.length + len };
      else extents.push({ offset: offset + done, length: len, hole, zero: hole });
    });
    return extents;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#pages.clear();
  }

  #check(what: string, offset: number, length: number, writes: boolean, options: IoOptions | undefined): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `${what}: device is closed`);
    throwIfAborted(options?.signal);
    if (writes && this.capabilities.readOnly) throw new BlockError('EPERM', `${what}: device is read-only`);
    checkRange(this.size, offset, length, what);
  }

  #zero(offset: number, length: number): void {
    this.#forEachPage(offset, length, (page, pageOffset, len) => {
      if (len === PAGE_SIZE) this.#pages.delete(page);
      else this.#pages.get(page)?.fill(0, pageOffset, pageOffset + len);
    });
  }

  #forEachPage(
    offset: number,
    length: number,
    fn: (page: number, pageOffset: number, length: number, done: number) => void,
  ): void {
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const page = Math.floor(position / PAGE_SIZE);
      const pageOffset = position % PAGE_SIZE;
      const len = Math.min(PAGE_SIZE - pageOffset, length - done);
      fn(page, pageOffset, len, done);
      done += len;
    }
  }
}
