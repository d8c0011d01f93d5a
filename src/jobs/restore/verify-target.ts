// `restore --verify`: reads back every slot of the backup from the target and compares it with
// the backup's index: the content hash of each data slot, all zeroes for each zero slot. Nothing
// is fetched from the repository but the index, so a check costs one read of the target.

import type { BlockDevice } from '../../block/block-device.js';
import { BackupSlots } from '../../repo/backup-slots.js';
import { isAllZero } from '../../repo/blob-codec.js';
import type { Manifest } from '../../repo/manifest.js';
import type { Repository } from '../../repo/repository.js';
import { runBounded } from '../../repo/run-bounded.js';
import { slotRuns, type SlotRun } from './slot-runs.js';

/** Read size for zero runs (rounded to whole slots). */
const ZERO_PIECE = 1024 * 1024;

export interface VerifyTargetReport {
  readonly bytesChecked: number;
  /** Slots (offset, length in bytes) whose content differs from the backup. */
  readonly mismatches: readonly { readonly offset: number; readonly length: number }[];
}

export async function verifyTarget(
  repo: Repository,
  manifest: Manifest,
  target: BlockDevice,
  options: { concurrency?: number; signal?: AbortSignal; onProgress?: (bytesDone: number) => void } = {},
): Promise<VerifyTargetReport> {
  const { signal } = options;
  const slots = await BackupSlots.open(repo, manifest, { signal });
  const mismatches: { offset: number; length: number }[] = [];
  let bytesChecked = 0;
  const chunkSize = manifest.chunkSize;
  const pieceLength = chunkSize * Math.max(1, Math.floor(ZERO_PIECE / chunkSize)); // whole slots
  const step = async (run: SlotRun): Promise<void> => {
    if (run.kind === 'data') {
      const bytes = Buffer.allocUnsafe(run.length);
      await target.read(run.offset, bytes, { signal });
      if (!repo.codec.idOf(bytes).equals(run.id)) mismatches.push({ offset: run.offset, length: run.length });
    } else {
      const piece = Buffer.allocUnsafe(Math.min(pieceLength, run.length));
      for (let at = run.offset; at < run.offset + run.length; at += piece.length) {
        const view = piece.subarray(0, Math.min(piece.length, run.offset + run.length - at));
        await target.read(at, view, { signal });
        if (isAllZero(view)) continue;
        // Name the slots that differ, as for data slots.
        for (let within = 0; within < view.length; within += chunkSize) {
          const slot = view.subarray(within, within + chunkSize);
          if (!isAllZero(slot)) mismatches.push({ offset: at + within, length: slot.length });
        }
      }
    }
    bytesChecked += run.length;
    options.onProgress?.(bytesChecked);
  };
  await runBounded(slotRuns(slots, { signal }), step, options.concurrency ?? 8, signal);
  mismatches.sort((a, b) => a.offset - b.offset);
  return { bytesChecked, mismatches };
}
