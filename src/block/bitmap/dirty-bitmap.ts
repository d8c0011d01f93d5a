// A named dirty bitmap: one bit per `granularity` bytes of a disk, in a Uint32Array, so that
// marking a write and walking the dirty extents of a large disk stay cheap.

import { isPowerOfTwo } from '../../core/size.js';
import { BitmapError } from './bitmap-error.js';

export const DEFAULT_GRANULARITY = 64 * 1024;
export const MIN_GRANULARITY = 4096;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A run of granules with the same state, clipped to the queried range. */
export interface BitmapExtent {
  readonly offset: number;
  readonly length: number;
  readonly dirty: boolean;
}

export interface DirtyBitmapOptions {
  readonly granularity?: number;
  /** Disabled bitmaps keep their bits but are not marked by writes. */
  readonly enabled?: boolean;
  /** Loaded in-use after an unclean stop: can only be removed. */
  readonly inconsistent?: boolean;
}

export function checkBitmapName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new BitmapError('EBITMAP_INVALID', `invalid bitmap name '${name}': expected 1-128 of A-Z a-z 0-9 . _ - not starting with . _ -`);
  }
}

export class DirtyBitmap {
  readonly name: string;
  readonly granularity: number;
  /** True when the persisted copy was found in use: nothing may trust these bits. */
  readonly inconsistent: boolean;
  #enabled: boolean;
  // Told when `enabled` flips (the BitmapSet holding this bitmap keeps its list of marked ones).
  readonly #toggleListeners = new Set<() => void>();
  #size: number;
  #granules: number;
  // Bit i of words[i >> 5] is granule i. Single-threaded JS: mutations are atomic per call.
  #words: Uint32Array;

  constructor(name: string, size: number, options: DirtyBitmapOptions = {}) {
    checkBitmapName(name);
    const granularity = options.granularity ?? DEFAULT_GRANULARITY;
    if (!isPowerOfTwo(granularity) || granularity < MIN_GRANULARITY || granularity > 2 ** 30) {
      throw new BitmapError('EBITMAP_INVALID', `invalid granularity ${granularity}: expected a power of two from ${MIN_GRANULARITY} to 1G`);
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new BitmapError('EBITMAP_INVALID', `invalid bitmap size ${size}`);
    this.name = name;
    this.granularity = granularity;
    this.#enabled = options.enabled ?? true;
    this.inconsistent = options.inconsistent ?? false;
    this.#size = size;
    this.#granules = Math.ceil(size / granularity);
    this.#words = new Uint32Array(Math.ceil(this.#granules / 32));
  }

  /** Disabled bitmaps keep their bits but are not marked by writes. */
  get enabled(): boolean {
    return this.#enabled;
  }

  set enabled(value: boolean) {
    if (value === this.#enabled) return;
    this.#enabled = value;
    for (const listener of this.#toggleListeners) listener();
  }

  /** Calls `listener` whenever `enabled` changes; returns the function that stops it. */
  onToggle(listener: () => void): () => void {
    this.#toggleListeners.add(listener);
    return () => this.#toggleListeners.delete(listener);
  }

  get size(): number {
    return this.#size;
  }

  /** The raw words, for persistence; do not keep the reference across resize(). */
  get words(): Uint32Array {
    return this.#words;
  }

  /** Replaces the bits with persisted words (length must match). */
  loadWords(words: Uint32Array): void {
    if (words.length !== this.#words.length) {
      throw new BitmapError('EBITMAP_INVALID', `bitmap '${this.name}': ${words.length} words stored, ${this.#words.length} expected`);
    }
    this.#words.set(words);
  }

  /** Throws unless the bits can be trusted. */
  assertConsistent(what: string): void {
    if (this.inconsistent) {
      throw new BitmapError('EBITMAP_INCONSISTENT', `bitmap '${this.name}' is inconsistent (not closed cleanly): cannot ${what}; remove it and take a full backup`);
    }
  }

  /** Marks every granule touching [offset, offset+length). On every guest write: no allocation. */
  set(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new BitmapError('EBITMAP_INVALID', `invalid range offset=${offset} length=${length}`);
    }
    const end = Math.min(offset + length, this.#size);
    if (end <= offset) return;
    const first = Math.floor(offset / this.granularity);
    const last = Math.floor((end - 1) / this.granularity);
    const words = this.#words;
    const firstWord = first >>> 5;
    const lastWord = last >>> 5;
    if (firstWord === lastWord) {
      words[firstWord]! |= (0xffffffff >>> (31 - (last & 31))) & (0xffffffff << (first & 31));
      return;
    }
    words[firstWord]! |= 0xffffffff << (first & 31);
    if (lastWord - firstWord > 1) words.fill(0xffffffff, firstWord + 1, lastWord);
    words[lastWord]! |= 0xffffffff >>> (31 - (last & 31));
  }

  /** Clears every granule touching [offset, offset+length). */
  reset(offset: number, length: number): void {
    const [first, last] = this.#span(offset, length);
    if (first <= last) this.#clear(first, last);
  }

  clearAll(): void {
    this.#words.fill(0);
  }

  /** True if any granule touching the range is dirty. */
  isDirty(offset: number, length: number): boolean {
    const [first, last] = this.#span(offset, length);
    if (first > last) return false;
    const next = this.#next(first, true);
    return next !== -1 && next <= last;
  }

  /** Dirty bytes (granules × granularity, the last one clipped to the size). */
  get dirtyBytes(): number {
    let bytes = 0;
    for (const e of this.extents()) if (e.dirty) bytes += e.length;
    return bytes;
  }

  /** Runs of clean/dirty granules covering [offset, offset+length), clipped to that range. */
  *extents(offset = 0, length = this.#size - offset): Generator<BitmapExtent> {
    const end = Math.min(offset + length, this.#size);
    let position = offset;
    while (position < end) {
      const granule = Math.floor(position / this.granularity);
      const dirty = this.#bit(granule);
      const change = this.#next(granule, !dirty);
      const stop = change === -1 ? end : Math.min(end, change * this.granularity);
      yield { offset: position, length: stop - position, dirty };
      position = stop;
    }
  }

  /** ORs another bitmap of the same disk into this one (any granularity). */
  merge(other: DirtyBitmap): void {
    if (other.size !== this.#size) {
      throw new BitmapError('EBITMAP_INVALID', `cannot merge bitmap '${other.name}' of size ${other.size} into '${this.name}' of size ${this.#size}`);
    }
    if (other.granularity === this.granularity) {
      const src = other.words;
      for (let i = 0; i < this.#words.length; i++) this.#words[i]! |= src[i]!;
      return;
    }
    for (const e of other.extents()) if (e.dirty) this.set(e.offset, e.length);
  }

  /** A copy with another name (frozen views for snapshots, --keep-bitmap). */
  clone(name: string, options: { enabled?: boolean } = {}): DirtyBitmap {
    const copy = new DirtyBitmap(name, this.#size, { granularity: this.granularity, enabled: options.enabled ?? this.enabled });
    copy.#words.set(this.#words);
    return copy;
  }

  /** Follows a disk resize: bits past the old end start clean; bits past the new end are dropped. */
  resize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0) throw new BitmapError('EBITMAP_INVALID', `invalid bitmap size ${size}`);
    const granules = Math.ceil(size / this.granularity);
    const words = new Uint32Array(Math.ceil(granules / 32));
    words.set(this.#words.subarray(0, Math.min(words.length, this.#words.length)));
    const tail = granules % 32;
    if (tail !== 0 && words.length > 0) words[words.length - 1]! &= (1 << tail) - 1;
    this.#words = words;
    this.#granules = granules;
    this.#size = size;
  }

  #span(offset: number, length: number): [number, number] {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new BitmapError('EBITMAP_INVALID', `invalid range offset=${offset} length=${length}`);
    }
    const end = Math.min(offset + length, this.#size);
    if (end <= offset) return [1, 0];
    return [Math.floor(offset / this.granularity), Math.floor((end - 1) / this.granularity)];
  }

  #bit(granule: number): boolean {
    return ((this.#words[granule >>> 5]! >>> (granule & 31)) & 1) === 1;
  }

  #clear(first: number, last: number): void {
    for (let g = first; g <= last; ) {
      const word = g >>> 5;
      const lo = g & 31;
      const hi = Math.min(31, last - (word << 5));
      const mask = hi - lo === 31 ? 0xffffffff : (((1 << (hi - lo + 1)) - 1) << lo) >>> 0;
      this.#words[word]! &= ~mask;
      g = (word + 1) << 5;
    }
  }

  /** First granule >= from whose bit equals `value`, or -1. Skips whole words. */
  #next(from: number, value: boolean): number {
    let word = from >>> 5;
    if (word >= this.#words.length) return -1;
    let bits = value ? this.#words[word]! : ~this.#words[word]!;
    bits = (bits & ~((1 << (from & 31)) - 1 >>> 0)) >>> 0;
    while (bits === 0) {
      word++;
      if (word >= this.#words.length) return -1;
      bits = (value ? this.#words[word]! : ~this.#words[word]!) >>> 0;
    }
    const granule = (word << 5) + (31 - Math.clz32(bits & -bits));
    return granule < this.#granules ? granule : -1;
  }
}
