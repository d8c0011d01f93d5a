// Names a disk backup leaves on the daemon: the bitmap `fleece-backup.<checkpoint>` that tracks
// changes since the backup whose manifest holds <checkpoint>, and the job's own snapshot
// `fleece-backup-<pid>-<random>`, whose pid tells a live job's snapshot from a killed one's.

import { randomBytes } from 'node:crypto';

export const BACKUP_BITMAP_PREFIX = 'fleece-backup.';
export const BACKUP_SNAPSHOT_PREFIX = 'fleece-backup-';

/** A fresh checkpoint id: 16 hex digits, unique per backup job. */
export function newCheckpoint(): string {
  return randomBytes(8).toString('hex');
}

export function backupBitmapName(checkpoint: string): string {
  return BACKUP_BITMAP_PREFIX + checkpoint;
}

/** The checkpoint a bitmap name carries, or undefined for other bitmaps. */
export function checkpointOf(bitmap: string): string | undefined {
  return bitmap.startsWith(BACKUP_BITMAP_PREFIX) && bitmap.length > BACKUP_BITMAP_PREFIX.length ? bitmap.slice(BACKUP_BITMAP_PREFIX.length) : undefined;
}

export function backupSnapshotName(pid = process.pid): string {
  return `${BACKUP_SNAPSHOT_PREFIX}${pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * True for a snapshot a backup job created and can no longer release itself: its process is
 * gone (or is this very process, which has made none yet). Snapshots of live jobs are left alone.
 */
export function isStaleBackupSnapshot(name: string, isAlive: (pid: number) => boolean = pidAlive): boolean {
  if (!name.startsWith(BACKUP_SNAPSHOT_PREFIX)) return false;
  const pid = Number(/^(\d+)-/.exec(name.slice(BACKUP_SNAPSHOT_PREFIX.length))?.[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return true;
  return !isAlive(pid);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
