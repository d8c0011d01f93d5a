// Mark phase shared by gc, check and stats: every blob id a set of backups references (index
// roots, index pages, chunks). Fails loudly when an index cannot be read: deciding what is
// garbage without knowing what is referenced would destroy data.

import { BlobType, ZERO_ID } from './blob-codec.js';
import type { Manifest } from './manifest.js';
import type { Repository } from './repository.js';

export interface References {
  /** hex id -> blob type */
  readonly blobs: Map<string, number>;
  /** backups whose index could not be read, with why */
  readonly unreadable: { readonly id: string; readonly error: string }[];
}

export async function collectReferences(repo: Repository, manifests: readonly Manifest[], options: { signal?: AbortSignal } = {}): Promise<References> {
  const blobs = new Map<string, number>();
  const unreadable: { id: string; error: string }[] = [];
  const seenPages = new Set<string>();
  for (const manifest of manifests) {
    try {
      blobs.set(manifest.root, BlobType.root);
      for (const pageId of await repo.pageIds(manifest, options)) {
        const hex = pageId.toString('hex');
        blobs.set(hex, BlobType.page);
        if (seenPages.has(hex)) continue;
        seenPages.add(hex);
        const page = await repo.page(pageId, options);
        for (let at = 0; at < page.length; at += 32) {
          const id = page.subarray(at, at + 32);
          if (!id.equals(ZERO_ID)) blobs.set(id.toString('hex'), BlobType.chunk);
        }
      }
    } catch (err) {
      unreadable.push({ id: manifest.id, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { blobs, unreadable };
}
