// export-diff: the difference between two backups of one disk as an `rbd diff v1` stream.
// Slots whose chunk ids differ become 'w' records (zero slots become 'z' runs); without a
// base backup every slot is written. Chunks are fetched a few ahead, emitted in order.

import { throwIfAborted } from '../../core/errors.js';
import { BackupSlots } from '../../repo/backup-slots.js';
import type { Manifest } from '../../repo/manifest.js';
import type { Repository } from '../../repo/repository.js';
import { encodeEnd, encodeHeader, encodeWriteHeader, encodeZero } from './encoder.js';
import { DiffError } from './format.js';

export interface ExportDiffOptions {
  /** The older backup; without it the diff is a full image from nothing. */
  readonly from?: Manifest;
  /** Chunks fetched ahead of the one being written. */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: { slotsDone: number; slotsTotal: number }) => void;
}

export interface ExportDiffReport {
  readonly size: number;
  readonly writtenBytes: number;
  readonly zeroedBytes: number;
  readonly unchangedBytes: number;
}

/** Writes the diff through `sink`, which must finish each write before resolving (backpressure). */
export async function exportDiff(repo: Repository, to: Manifest, sink: (bytes: Buffer) => Promise<void>, options: ExportDiffOptions = {}): Promise<ExportDiffReport> {
  const { from, signal } = options;
  if (from && from.disk !== to.disk) {
    throw new DiffError('EDIFFTARGET', `backups ${from.id} (disk '${from.disk}') and ${to.id} (disk '${to.disk}') are of different disks`);
  }
  if (from && from.chunkSize !== to.chunkSize) {
    throw new DiffError('EDIFFTARGET', `backups ${from.id} and ${to.id} have different chunk sizes (${from.chunkSize} and ${to.chunkSize})`);
  }
  const toSlots = await BackupSlots.open(repo, to, { signal });
  const fromSlots = from ? await BackupSlots.open(repo, from, { signal }) : undefined;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const chunkSize = to.chunkSize;
  let writtenBytes = 0;
  let zeroedBytes = 0;
  let zeroRun: { offset: number; length: number } | undefined;
  const flushZeroes = async (): Promise<void> => {
    if (!zeroRun) return;
    await sink(encodeZero(zeroRun.offset, zeroRun.length));
    zeroedBytes += zeroRun.length;
    zeroRun = undefined;
  };
  // Data slots whose chunks are being fetched, in slot order.
  const ahead: Array<{ slot: number; data: Promise<Buffer> }> = [];
  const emitHead = async (): Promise<void> => {
    const head = ahead.shift()!;
    const data = await head.data;
    await sink(encodeWriteHeader(head.slot * chunkSize, data.length));
    await sink(data);
    writtenBytes += data.length;
  };

  await sink(encodeHeader({ ...(from ? { fromSnap: from.id } : {}), toSnap: to.id, size: to.size }));
  try {
    for (let slot = 0; slot < toSlots.count; slot++) {
      throwIfAborted(signal);
      options.onProgress?.({ slotsDone: slot, slotsTotal: toSlots.count });
      const id = await toSlots.id(slot, { signal });
      if (fromSlots && slot < fromSlots.count && fromSlots.slotLength(slot) === toSlots.slotLength(slot)) {
        if ((await fromSlots.id(slot, { signal })).equals(id)) continue; // unchanged
      } else if (fromSlots && slot >= fromSlots.count && BackupSlots.isZero(id)) {
        continue; // grown past the old size: already zero after the resize
      }
      if (BackupSlots.isZero(id)) {
        while (ahead.length > 0) await emitHead();
        const offset = slot * chunkSize;
        if (zeroRun && zeroRun.offset + zeroRun.length === offset) zeroRun.length += toSlots.slotLength(slot);
        else {
          await flushZeroes();
          zeroRun = { offset, length: toSlots.slotLength(slot) };
        }
        continue;
      }
      await flushZeroes();
      const data = toSlots.chunk(slot, id, { signal });
      data.catch(() => {}); // observed when emitted
      ahead.push({ slot, data });
      if (ahead.length > concurrency) await emitHead();
    }
    while (ahead.length > 0) await emitHead();
    await flushZeroes();
  } finally {
    for (const { data } of ahead) await data.catch(() => {});
  }
  await sink(encodeEnd());
  return { size: to.size, writtenBytes, zeroedBytes, unchangedBytes: to.size - writtenBytes - zeroedBytes };
}
