// Repository statistics: logical bytes (what the backups describe) against stored bytes (what
// the store holds), dedup and compression ratios, object counts. Derived from the catalog.

import { collectReferences } from './references.js';
import type { Repository } from './repository.js';

export interface RepoStats {
  readonly backups: number;
  /** Sum of disk sizes over all backups. */
  readonly logicalBytes: number;
  /** Sum over backups of their non-zero slots' bytes. */
  readonly dataBytes: number;
  /** Uncompressed bytes of the distinct referenced chunks. */
  readonly uniqueBytes: number;
  /** Stored bytes of those chunks (compressed, sealed). */
  readonly uniqueStoredBytes: number;
  readonly chunks: number;
  readonly packs: number;
  readonly packBytes: number;
  readonly objects: number;
  readonly dedupRatio: number;
  readonly compressionRatio: number;
}

export async function collectStats(repo: Repository, options: { signal?: AbortSignal } = {}): Promise<RepoStats> {
  const backups = repo.catalog.backups();
  const refs = await collectReferences(repo, backups, options);
  let uniqueBytes = 0;
  let uniqueStoredBytes = 0;
  let chunks = 0;
  for (const [hex, type] of refs.blobs) {
    if (type !== 0) continue;
    const location = repo.catalog.locate(Buffer.from(hex, 'hex'))[0];
    if (!location) continue;
    chunks++;
    uniqueBytes += location.rawLength;
    uniqueStoredBytes += location.storedLength;
  }
  const packs = repo.catalog.packs();
  let objects = 0;
  for await (const _ of repo.store.list('', options)) objects++;
  const dataBytes = backups.reduce((sum, b) => sum + Math.min(b.size, (b.counts.slots - b.counts.zeroSlots) * b.chunkSize), 0);
  return {
    backups: backups.length,
    logicalBytes: backups.reduce((sum, b) => sum + b.size, 0),
    dataBytes,
    uniqueBytes,
    uniqueStoredBytes,
    chunks,
    packs: packs.size,
    packBytes: [...packs.values()].reduce((sum, p) => sum + p.size, 0),
    objects,
    dedupRatio: uniqueBytes > 0 ? dataBytes / uniqueBytes : 1,
    compressionRatio: uniqueStoredBytes > 0 ? uniqueBytes / uniqueStoredBytes : 1,
  };
}
