// Walks a backup's index in disk order as work items for jobs that write or check a target:
// runs of zero slots (merged, capped) and single data slots with their chunk id.

import { BackupSlots } from '../../repo/backup-slots.js';

/** Longest zero run handed out at once, in slots. */
const MAX_ZERO_SLOTS = 4096;

export type SlotRun =
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'data'; readonly slot: number; readonly offset: number; readonly length: number; readonly id: Buffer };

export async function* slotRuns(slots: BackupSlots, options: { signal?: AbortSignal } = {}): AsyncGenerator<[SlotRun]> {
  const chunkSize = slots.manifest.chunkSize;
  let zeroStart = -1;
  const zeroRun = (end: number): SlotRun => ({ kind: 'zero', offset: zeroStart * chunkSize, length: Math.min(slots.manifest.size, end * chunkSize) - zeroStart * chunkSize });
  for (let slot = 0; slot < slots.count; slot++) {
    const id = await slots.id(slot, options);
    if (BackupSlots.isZero(id)) {
      if (zeroStart < 0) zeroStart = slot;
      else if (slot - zeroStart >= MAX_ZERO_SLOTS) {
        yield [zeroRun(slot)];
        zeroStart = slot;
      }
      continue;
    }
    if (zeroStart >= 0) {
      yield [zeroRun(slot)];
      zeroStart = -1;
    }
    yield [{ kind: 'data', slot, offset: slot * chunkSize, length: slots.slotLength(slot), id }];
  }
  if (zeroStart >= 0) yield [zeroRun(slots.count)];
}
