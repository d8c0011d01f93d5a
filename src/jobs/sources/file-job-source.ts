// A raw image file (or block device) as a job source: read in full; holes reported by
// SEEK_DATA/SEEK_HOLE are skipped unread and dedup keeps the rest cheap.

import { RawFileDevice } from '../../block/drivers/raw-file-device.js';
import { FleeceError, UsageError } from '../../core/errors.js';
import { FileSource, type BackupSource } from '../../repo/backup-source.js';
import type { JobSource } from './job-source.js';

export async function openFileJobSource(path: string): Promise<JobSource> {
  const source = await openReadOnly(path);
  return {
    source,
    notices: [],
    commit: async () => undefined,
    abort: async () => undefined,
    close: () => source.close(),
  };
}

/** A RawFileDevice when possible (holes known); a plain file otherwise: slower, same backup. */
async function openReadOnly(path: string): Promise<BackupSource & { close(): Promise<void> }> {
  try {
    return await RawFileDevice.open(path, { readOnly: true });
  } catch (err) {
    if (err instanceof UsageError || (err instanceof FleeceError && err.code === 'ENATIVE')) return FileSource.open(path);
    throw err;
  }
}
