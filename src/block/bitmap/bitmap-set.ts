// The bitmaps of one disk. The dirty tracker marks every enabled one after each write; the
// daemon adds, removes and persists them. Inconsistent bitmaps are kept (so they can be listed
// and removed) but never marked or trusted.

import { BitmapError } from './bitmap-error.js';
import type { DirtyBitmap } from './dirty-bitmap.js';

export class BitmapSet {
  // Single-threaded: mutated only between awaits, so a write marks a consistent set.
  readonly #bitmaps = new Map<string, DirtyBitmap>();
  // Unnamed bitmaps marked like the others but not listed (e.g. "written since snapshot S").
  readonly #hidden = new Set<DirtyBitmap>();

  /** Adds a bitmap; throws EBITMAP_EXISTS if the name is taken. */
  add(bitmap: DirtyBitmap): DirtyBitmap {
    if (this.#bitmaps.has(bitmap.name)) throw new BitmapError('EBITMAP_EXISTS', `bitmap '${bitmap.name}' already exists`);
    this.#bitmaps.set(bitmap.name, bitmap);
    return bitmap;
  }

  /** The named bitmap; throws EBITMAP_NOT_FOUND. */
  get(name: string): DirtyBitmap {
    const bitmap = this.#bitmaps.get(name);
    if (!bitmap) throw new BitmapError('EBITMAP_NOT_FOUND', `no bitmap named '${name}'`);
    return bitmap;
  }

  has(name: string): boolean {
    return this.#bitmaps.has(name);
  }

  /** Removes and returns the named bitmap. */
  remove(name: string): DirtyBitmap {
    const bitmap = this.get(name);
    this.#bitmaps.delete(name);
    return bitmap;
  }

  list(): DirtyBitmap[] {
    return [...this.#bitmaps.values()];
  }

  /** Starts marking a bitmap that is not part of the named set. */
  track(bitmap: DirtyBitmap): void {
    this.#hidden.add(bitmap);
  }

  /** Stops marking a bitmap added with track(). */
  untrack(bitmap: DirtyBitmap): void {
    this.#hidden.delete(bitmap);
  }

  /** Marks [offset, offset+length) in every enabled, consistent bitmap. */
  markDirty(offset: number, length: number): void {
    for (const bitmap of this.#bitmaps.values()) {
      if (bitmap.enabled && !bitmap.inconsistent) bitmap.set(offset, length);
    }
    for (const bitmap of this.#hidden) bitmap.set(offset, length);
  }
}
