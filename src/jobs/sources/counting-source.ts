// Counts the bytes a backup actually reads from its source: the proof that an incremental read
// only the dirty clusters (reported by `fleece backup --json` as `bytesRead`).

import type { BackupSource } from '../../repo/backup-source.js';

export interface CountingSource extends BackupSource {
  readonly bytesRead: number;
}

export function countingSource(source: BackupSource): CountingSource {
  let bytesRead = 0;
  return {
    size: source.size,
    capabilities: source.capabilities,
    get bytesRead() {
      return bytesRead;
    },
    read: async (offset, target, options) => {
      await source.read(offset, target, options);
      bytesRead += target.length;
    },
    blockStatus: source.blockStatus?.bind(source),
  };
}
