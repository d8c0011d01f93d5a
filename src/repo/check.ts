// Check: structural consistency without reading chunk data. Errors: a manifest, index root or
// page that cannot be read, a referenced chunk in no pack, a pack whose trailer is unreadable.
// Warnings (gc reclaims them): unreferenced packs, dead leases.

import { describeError } from '../core/errors.js';
import { isLive, leaseTtlMs, readLeases } from './leases.js';
import { collectReferences } from './references.js';
import type { Repository } from './repository.js';

export interface CheckReport {
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  readonly backups: number;
  readonly packs: number;
  readonly unreferencedPacks: readonly string[];
}

export async function runCheck(repo: Repository, options: { signal?: AbortSignal } = {}): Promise<CheckReport> {
  const { signal } = options;
  const errors: string[] = [];
  const warnings: string[] = [];
  let manifestErrors = 0;
  for await (const { key } of repo.store.list('manifests/', { signal })) {
    try {
      await repo.readManifest(key.slice('manifests/'.length), { signal });
    } catch (err) {
      manifestErrors++;
      errors.push(`${key}: ${describeError(err)}`);
    }
  }
  const sync = await repo.syncCatalog({ signal });
  for (const broken of sync.brokenPacks) errors.push(`pack ${broken.pack}: ${broken.error}`);

  const manifests = repo.catalog.backups();
  const refs = await collectReferences(repo, manifests, { signal });
  for (const u of refs.unreadable) errors.push(`backup ${u.id}: index unreadable: ${u.error}`);
  const missing = new Map<string, number>();
  for (const [hex] of refs.blobs) {
    if (repo.catalog.locate(Buffer.from(hex, 'hex')).length === 0) missing.set(hex, 1);
  }
  if (missing.size > 0) {
    // Name the backups that need a missing blob.
    for (const m of manifests) {
      const own = await collectReferences(repo, [m], { signal });
      const lost = [...own.blobs.keys()].filter((h) => missing.has(h));
      if (lost.length > 0) errors.push(`backup ${m.id}: ${lost.length} referenced blobs are in no pack (first ${lost[0]!.slice(0, 16)})`);
    }
  }

  const packs = repo.catalog.packs();
  const unreferenced = [...packs.keys()].filter((p) => !repo.catalog.packEntries(p).some((e) => refs.blobs.has(e.id.toString('hex'))));
  if (unreferenced.length > 0) warnings.push(`${unreferenced.length} packs hold no referenced blob (gc reclaims them)`);
  const now = Date.now();
  const leases = await readLeases(repo.store, { signal });
  const dead = leases.filter((l) => !isLive(l, now));
  if (dead.length > 0) warnings.push(`${dead.length} leases expired more than ${leaseTtlMs()} ms ago (left by killed processes)`);
  const live = leases.length - dead.length;
  if (live > 0) warnings.push(`${live} live leases: a backup or gc is running`);
  return { errors, warnings, backups: manifests.length + manifestErrors, packs: packs.size, unreferencedPacks: unreferenced };
}
