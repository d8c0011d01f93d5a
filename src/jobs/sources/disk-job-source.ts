// `fleece backup disk:NAME`: a daemon disk as a job source. The job snapshots the disk (with the
// backup bitmap `fleece-backup.<checkpoint>` when a backup in this repository matches it, so
// only its dirty clusters are read), reads the snapshot export DISK@SNAP over DIR/nbd.sock, and
// on commit releases the snapshot keeping `fleece-backup.<new checkpoint>` (all writes since the
// snapshot) before removing the old bitmaps. Abort releases it keeping nothing: the old bitmap
// kept tracking throughout. A kill between steps leaves a superset bitmap or a stale snapshot.

import { NbdDevice } from '../../block/drivers/nbd-device.js';
import { FleeceError, UsageError } from '../../core/errors.js';
import { formatSize } from '../../core/size.js';
import type { Manifest } from '../../repo/manifest.js';
import { dirtyRanges, type ByteRange } from '../dirty-ranges.js';
import { DiskDaemon } from './disk-daemon.js';
import { backupBitmapName, backupSnapshotName, checkpointOf, isStaleBackupSnapshot, newCheckpoint } from './disk-names.js';
import { planDiskBackup, trackingGranularity } from './disk-plan.js';
import type { JobSource, OpenJobSourceOptions } from './job-source.js';

const DIRTY_BITMAP_CONTEXT = 'qemu:dirty-bitmap:';

export async function openDiskJobSource(name: string, options: OpenJobSourceOptions): Promise<JobSource> {
  if (options.bitmap !== undefined) throw new UsageError(`--bitmap applies to nbd:// sources only: 'disk:${name}' keeps its own backup bitmap`);
  if (name === '') throw new UsageError("source 'disk:' names no disk: expected disk:NAME");
  const { repo, signal } = options;
  if (!options.daemon) throw new UsageError(`source 'disk:${name}' needs the daemon: pass --state DIR or set FLEECE_STATE`);
  const daemon = new DiskDaemon(options.daemon);
  const info = await daemon.disk(name, { signal });
  const notices: string[] = [];
  for (const snap of info.snapshots.filter((s) => isStaleBackupSnapshot(s))) {
    await daemon.releaseSnapshot(name, snap).catch(ignoreCode('ESNAPSHOT_NOT_FOUND'));
    notices.push(`released snapshot '${name}@${snap}' left by an interrupted backup`);
  }

  const chunkSize = repo.config.chunkSize;
  const parent = options.parent === undefined ? undefined : repo.resolveBackup(options.parent);
  const plan = planDiskBackup({ disk: options.disk, size: info.size, chunkSize, bitmaps: info.bitmaps, backups: repo.catalog.backups(options.disk), parent });
  notices.push(...plan.notices);
  const bitmap = plan.kind === 'incremental' ? plan.bitmap.name : undefined;
  const parentId = plan.kind === 'incremental' ? plan.parent.id : undefined;

  const snapshot = backupSnapshotName();
  const created = await daemon.createSnapshot(name, snapshot, bitmap, { signal });
  const held = new HeldSnapshot(daemon, name, snapshot);
  let device: NbdDevice | undefined;
  let changed: ByteRange[] | undefined;
  try {
    const context = bitmap === undefined ? undefined : DIRTY_BITMAP_CONTEXT + bitmap;
    device = await NbdDevice.open({ kind: 'unix', path: daemon.nbdSocket, exportName: created.export }, { metaContexts: context ? [context] : [], signal });
    if (device.size !== info.size) throw new FleeceError('EIO', `snapshot export '${created.export}' is ${device.size} bytes, disk '${name}' is ${info.size}`);
    if (context !== undefined) {
      // The snapshot export's bitmap context is frozen at the snapshot's point in time: exactly
      // what changed between the parent and this view, and exactly what the snapshot protects.
      changed = await dirtyRanges(device, context, { signal });
      const bytes = changed.reduce((sum, r) => sum + r.length, 0);
      notices.push(`incremental on backup ${parentId!.slice(0, 12)}: ${formatSize(bytes)} changed of ${formatSize(info.size)}`);
    }
  } catch (err) {
    await device?.close().catch(() => undefined);
    await held.release();
    throw err;
  }
  const source = device;
  const checkpoint = newCheckpoint();
  return {
    source,
    changed,
    parent: parentId,
    time: created.createdAt,
    checkpoint,
    notices,
    async commit(manifest: Manifest) {
      await source.close();
      const kept = backupBitmapName(manifest.checkpoint ?? checkpoint);
      await held.release({ bitmap: kept, granularity: trackingGranularity(manifest.chunkSize) }, manifest.id);
      // Only now may the old checkpoints go: until here they were the only record of changes.
      const now = await daemon.disk(name);
      for (const b of now.bitmaps) {
        if (b.name !== kept && checkpointOf(b.name) !== undefined) await daemon.removeBitmap(name, b.name).catch(ignoreCode('EBITMAP_NOT_FOUND'));
      }
    },
    async abort() {
      await source.close().catch(() => undefined);
      await held.release().catch(() => undefined);
    },
    async close() {
      await source.close().catch(() => undefined);
      // Neither committed nor aborted (the job failed before it ran): nothing moves on.
      await held.release().catch(() => undefined);
    },
  };
}

/** The job's snapshot, released exactly once (keeping the new checkpoint's bitmap on commit). */
class HeldSnapshot {
  readonly #daemon: DiskDaemon;
  readonly #disk: string;
  readonly #name: string;
  #released = false;

  constructor(daemon: DiskDaemon, disk: string, name: string) {
    this.#daemon = daemon;
    this.#disk = disk;
    this.#name = name;
  }

  async release(keep?: { bitmap: string; granularity: number }, backupId?: string): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    try {
      await this.#daemon.releaseSnapshot(this.#disk, this.#name, keep);
    } catch (err) {
      if (!keep) throw err;
      throw new FleeceError(
        (err as FleeceError).code ?? 'EIO',
        `backup ${backupId} is stored, but snapshot '${this.#disk}@${this.#name}' could not be released with bitmap '${keep.bitmap}' (${(err as Error).message}): ` +
          'the next backup reads the changes since the previous checkpoint again',
        { cause: err },
      );
    }
  }
}

function ignoreCode(code: string): (err: unknown) => void {
  return (err) => {
    if (!(err instanceof FleeceError && err.code === code)) throw err;
  };
}
