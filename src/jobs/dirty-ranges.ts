// The byte ranges a dirty-bitmap context marks (qemu:dirty-bitmap:NAME from qemu-nbd -B or the
// fleece daemon): the `changed` list an incremental backup reads instead of the whole disk.

import type { NbdDevice } from '../block/drivers/nbd-device.js';
import { throwIfAborted } from '../core/errors.js';

/** Dirty-bitmap contexts set bit 0 on changed extents. */
export const DIRTY_FLAG = 1;

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

/** Every range of `context` with the dirty flag over the whole device, adjacent ones merged. */
export async function dirtyRanges(device: NbdDevice, context: string, options: { signal?: AbortSignal } = {}): Promise<ByteRange[]> {
  const ranges: ByteRange[] = [];
  let at = 0;
  while (at < device.size) {
    throwIfAborted(options.signal);
    for (const extent of await device.contextStatus(context, at, device.size - at, options)) {
      if (extent.flags & DIRTY_FLAG) {
        const last = ranges[ranges.length - 1];
        if (last && last.offset + last.length === extent.offset) ranges[ranges.length - 1] = { offset: last.offset, length: last.length + extent.length };
        else ranges.push({ offset: extent.offset, length: extent.length });
      }
      at = extent.offset + extent.length;
    }
  }
  return ranges;
}
