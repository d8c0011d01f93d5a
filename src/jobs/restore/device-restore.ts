// Restore into a block device (an NBD export, a daemon disk): chunks are fetched and written
// several at a time; zero runs become WRITE_ZEROES, or are skipped when the target is known to
// read as zero already (a disk created for this restore).

import type { BlockDevice } from '../../block/block-device.js';
import { UsageError } from '../../core/errors.js';
import { BackupSlots } from '../../repo/backup-slots.js';
import type { Manifest } from '../../repo/manifest.js';
import type { Repository } from '../../repo/repository.js';
import { runBounded } from '../../repo/run-bounded.js';
import { slotRuns, type SlotRun } from './slot-runs.js';

export interface DeviceRestoreOptions {
  /** Chunks fetched and written at once (default 8). */
  readonly concurrency?: number;
  /** The target reads as zero everywhere now: zero runs are not written. */
  readonly targetIsZero?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (bytesDone: number) => void;
}

export interface DeviceRestoreReport {
  readonly dataBytes: number;
  readonly zeroBytes: number;
}

/** Refuses a target that cannot hold the backup. */
export function checkRestoreTarget(manifest: Manifest, target: BlockDevice, name: string): void {
  if (target.capabilities.readOnly) throw new UsageError(`target '${name}' is read-only`);
  if (target.size < manifest.size) throw new UsageError(`target '${name}' is ${target.size} bytes, smaller than backup ${manifest.id} (${manifest.size} bytes)`);
}

export async function restoreToDevice(repo: Repository, manifest: Manifest, target: BlockDevice, options: DeviceRestoreOptions = {}): Promise<DeviceRestoreReport> {
  const { signal } = options;
  const slots = await BackupSlots.open(repo, manifest, { signal });
  let dataBytes = 0;
  let zeroBytes = 0;
  const step = async (run: SlotRun): Promise<void> => {
    if (run.kind === 'zero') {
      if (!options.targetIsZero) await target.writeZeroes(run.offset, run.length, { signal });
      zeroBytes += run.length;
    } else {
      const chunk = await slots.chunk(run.slot, run.id, { signal });
      await target.write(run.offset, chunk, { signal });
      dataBytes += run.length;
    }
    options.onProgress?.(dataBytes + zeroBytes);
  };
  await runBounded(slotRuns(slots, { signal }), step, options.concurrency ?? 8, signal);
  await target.flush({ signal });
  return { dataBytes, zeroBytes };
}
