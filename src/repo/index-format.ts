// A backup's index: slot i -> chunk id (ZERO_ID for an all-zero slot), cut into pages of
// SLOTS_PER_PAGE slots stored as content-addressed blobs, plus a root blob listing page ids.
// Unchanged pages keep their id, so an incremental writes index data in proportion to change.

import { ID_LENGTH } from './blob-codec.js';
import { RepoError } from './errors.js';

export const SLOTS_PER_PAGE = 1024;

export function slotCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

export function pageCount(slots: number): number {
  return Math.ceil(slots / SLOTS_PER_PAGE);
}

/** Slots held by page `page` of an index with `slots` slots (the last page may be short). */
export function slotsInPage(page: number, slots: number): number {
  return Math.min(SLOTS_PER_PAGE, slots - page * SLOTS_PER_PAGE);
}

/** Splits a root blob into page ids, checking it has exactly `pages` of them. */
export function decodeRoot(root: Buffer, pages: number, what: string): Buffer[] {
  if (root.length !== pages * ID_LENGTH) throw new RepoError('ECORRUPT', `${what}: index root is ${root.length} bytes, expected ${pages * ID_LENGTH}`);
  return Array.from({ length: pages }, (_, i) => root.subarray(i * ID_LENGTH, (i + 1) * ID_LENGTH));
}

export function pageSlot(page: Buffer, i: number): Buffer {
  return page.subarray(i * ID_LENGTH, (i + 1) * ID_LENGTH);
}
