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
  // Stops listening to a named bitmap's enabled flag (set on add, called on remove).
  readonly #unwatch = new Map<DirtyBitmap, () => void>();
  // What markDirty marks: enabled consistent named bitmaps, then hidden ones. Rebuilt on every
  // add, remove, track, untrack and enabled flip, so the write path only walks an array.
  #marked: readonly DirtyBitmap[] = [];

  /** Adds a bitmap; throws EBITMAP_EXISTS if the name is taken. */
  add(bitmap: DirtyBitmap): DirtyBitmap {
    if (this.#bitmaps.has(bitmap.name)) throw new BitmapError('EBITMAP_EXISTS', `bitmap '${bitmap.name}' already exists`);
    this.#bitmaps.set(bitmap.name, bitmap);
    this.#unwatch.set(bitmap, bitmap.onToggle(() => this.#rebuild()));
    this.#rebuild();
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
    this.#unwatch.get(bitmap)?.();
    this.#unwatch.delete(bitmap);
    this.#rebuild();
    return bitmap;
  }

  list(): DirtyBitmap[] {
    return [...this.#bitmaps.values()];
  }

  /** Starts marking a bitmap that is not part of the named set. */
  track(bitmap: DirtyBitmap): void {
    this.#hidden.add(bitmap);
    this.#rebuild();
  }

  /** Stops marking a bitmap added with track(). */
  untrack(bitmap: DirtyBitmap): void {
    this.#hidden.delete(bitmap);
    this.#rebuild();
  }

  /** Marks [offset, offset+length) in every enabled, consistent bitmap. Runs on every write. */
  markDirty(offset: number, length: number): void {
    const marked = this.#marked;
    for (let i = 0; i < marked.length; i++) marked[i]!.set(offset, length);
  }

  #rebuild(): void {
    const marked: DirtyBitmap[] = [];
    for (const bitmap of this.#bitmaps.values()) {
      if (bitmap.enabled && !bitmap.inconsistent) marked.push(bitmap);
    }
    for (const bitmap of this.#hidden) marked.push(bitmap);
    this.#marked = marked;
  }
}
