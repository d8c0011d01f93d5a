// Decides between an incremental and a full backup of a daemon disk. Incremental only when a
// consistent, enabled `fleece-backup.<checkpoint>` bitmap matches a backup of this disk in this
// repository whose manifest holds that checkpoint; anything else is full, and the reason is said.

import type { Manifest } from '../../repo/manifest.js';
import { checkpointOf } from './disk-names.js';

/** A bitmap as the daemon lists it (GET /disks). */
export interface DiskBitmapInfo {
  readonly name: string;
  readonly granularity: number;
  readonly enabled: boolean;
  readonly inconsistent: boolean;
}

export interface DiskPlanInput {
  /** Disk name the backups are filed under. */
  readonly disk: string;
  /** Current disk size in bytes. */
  readonly size: number;
  /** The repository's chunk size. */
  readonly chunkSize: number;
  readonly bitmaps: readonly DiskBitmapInfo[];
  /** Backups of the disk in the repository, oldest first. */
  readonly backups: readonly Manifest[];
  /** The parent the operator asked for (--parent), if any. */
  readonly parent?: Manifest;
}

export type DiskPlan =
  | { readonly kind: 'incremental'; readonly bitmap: DiskBitmapInfo; readonly parent: Manifest; readonly notices: readonly string[] }
  | { readonly kind: 'full'; readonly notices: readonly string[] };

/** Snapshot cluster size of the daemon: slots no larger than this sit inside protected clusters. */
const SNAPSHOT_CLUSTER = 64 * 1024;

/**
 * The bitmap granularity a backup keeps for the next run: a dirty granule must cover whole
 * slots, since the snapshot serves only dirty granules and the engine reads whole slots.
 */
export function trackingGranularity(chunkSize: number): number {
  return Math.max(SNAPSHOT_CLUSTER, chunkSize);
}

export function planDiskBackup(input: DiskPlanInput): DiskPlan {
  const tracking = input.bitmaps.filter((b) => checkpointOf(b.name) !== undefined);
  const usable = new Map<string, DiskBitmapInfo>();
  for (const b of tracking) {
    if (!b.inconsistent && b.enabled && (b.granularity >= input.chunkSize || input.chunkSize <= SNAPSHOT_CLUSTER)) usable.set(checkpointOf(b.name)!, b);
  }
  const matches = input.backups.filter((m) => m.checkpoint !== null && usable.has(m.checkpoint) && m.size === input.size && m.chunkSize === input.chunkSize);
  const candidates = input.parent ? matches.filter((m) => m.id === input.parent!.id) : matches;
  const chosen = candidates[candidates.length - 1];
  if (chosen) return { kind: 'incremental', bitmap: usable.get(chosen.checkpoint!)!, parent: chosen, notices: [] };
  return { kind: 'full', notices: [fullReason(input, tracking, matches)] };
}

function fullReason(input: DiskPlanInput, tracking: readonly DiskBitmapInfo[], matches: readonly Manifest[]): string {
  const disk = `disk '${input.disk}'`;
  const loud = (why: string): string => `WARNING: ${why}: this backup is FULL (the whole disk is read)`;
  const inconsistent = tracking.filter((b) => b.inconsistent);
  if (inconsistent.length > 0) {
    return loud(`change tracking of ${disk} was lost: bitmap '${inconsistent[0]!.name}' is inconsistent (the daemon stopped uncleanly) and cannot be trusted`);
  }
  if (input.parent && matches.length > 0) return `--parent ${input.parent.id}: no bitmap tracks the changes since that backup; full backup`;
  const disabled = tracking.find((b) => !b.enabled);
  if (disabled) return loud(`bitmap '${disabled.name}' of ${disk} is disabled, so it missed writes`);
  const coarse = tracking.find((b) => b.granularity < input.chunkSize && input.chunkSize > SNAPSHOT_CLUSTER);
  if (coarse) return `bitmap '${coarse.name}' granularity ${coarse.granularity} is finer than the repository's chunk size ${input.chunkSize}; full backup`;
  if (input.backups.length === 0) return `first backup of ${disk} in this repository: full backup`;
  const resized = input.backups.find((m) => m.checkpoint !== null && tracking.some((b) => checkpointOf(b.name) === m.checkpoint) && m.size !== input.size);
  if (resized) return `${disk} is ${input.size} bytes, its last tracked backup ${resized.id} was ${resized.size}: full backup`;
  if (tracking.length > 0) {
    return `no backup of ${disk} in this repository matches bitmap '${tracking[tracking.length - 1]!.name}' (deleted, or made into another repository); full backup`;
  }
  return loud(`${disk} has no backup bitmap (removed, or the disk was recreated)`);
}
