// The NBD metadata contexts the daemon adds to its exports: `qemu:dirty-bitmap:NAME` (flag 1:
// dirty, as QEMU defines it) and `fleece:cache-location` of a snapshot (LOCATION_* flags).

import type { DirtyBitmap } from '../block/bitmap/dirty-bitmap.js';
import type { SnapshotAccessDevice } from '../block/filters/snapshot-access.js';
import type { MetaContextProvider, MetaExtent } from '../nbd/index.js';

export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';
export const CACHE_LOCATION = 'fleece:cache-location';
/** Replies stay small: a client asks again from where the answer stopped. */
const MAX_EXTENTS = 8192;

export function dirtyBitmapContext(bitmap: DirtyBitmap): MetaContextProvider {
  return {
    name: DIRTY_BITMAP_PREFIX + bitmap.name,
    async blockStatus(offset, length) {
      bitmap.assertConsistent('report it over NBD');
      const out: MetaExtent[] = [];
      for (const e of bitmap.extents(offset, length)) {
        out.push({ length: e.length, flags: e.dirty ? 1 : 0 });
        if (out.length >= MAX_EXTENTS) break;
      }
      return out.length > 0 ? out : [{ length, flags: 0 }];
    },
  };
}

/** One `qemu:dirty-bitmap:NAME` context per consistent bitmap (inconsistent ones are never offered). */
export function bitmapContexts(bitmaps: readonly DirtyBitmap[]): MetaContextProvider[] {
  return bitmaps.filter((b) => !b.inconsistent).map((b) => dirtyBitmapContext(b));
}

export function cacheLocationContext(device: SnapshotAccessDevice): MetaContextProvider {
  return {
    name: CACHE_LOCATION,
    async blockStatus(offset, length) {
      return device.location(offset, Math.min(length, MAX_EXTENTS * device.snapshot.clusterSize));
    },
  };
}
