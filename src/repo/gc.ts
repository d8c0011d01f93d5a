// Garbage collection: mark every blob a manifest references, then delete packs holding none.
// Safety against running backups (see repository-format.md "GC and leases"): with no live
// backup lease, unreferenced packs go at once; otherwise they are condemned first and deleted
// by a later gc once every live backup started after the condemnation was written.

import { RepoError } from './errors.js';
import { readCondemned, writeCondemned } from './condemned.js';
import { isLive, Lease, leaseTtlMs, readLeases } from './leases.js';
import { packKey } from './pack-format.js';
import { collectReferences } from './references.js';
import type { Repository } from './repository.js';

export interface GcOptions {
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
}

export interface GcReport {
  /** 'immediate': no backup was running; 'deferred': unreferenced packs were condemned. */
  readonly mode: 'immediate' | 'deferred';
  readonly liveBackups: number;
  readonly referencedBlobs: number;
  readonly keptPacks: number;
  readonly deletedPacks: readonly string[];
  readonly deletedBytes: number;
  readonly condemnedPacks: readonly string[];
  readonly deletedLeases: number;
  readonly dryRun: boolean;
}

/** Allowance for clock skew between hosts comparing lease and condemnation times. */
const SKEW_MS = 2000;

export async function runGc(repo: Repository, options: GcOptions = {}): Promise<GcReport> {
  const { signal } = options;
  const dryRun = options.dryRun ?? false;
  const lock = await Lease.acquire(repo.store, 'gc', { signal });
  try {
    // Lock, then leases, then mark: a backup that commits after we read its lease is already
    // in the manifests we mark; one that starts later waits for our lock to go.
    const now = Date.now();
    const leases = await readLeases(repo.store, { signal });
    const otherGc = leases.find((l) => l.kind === 'gc' && l.key !== lock.key && isLive(l, now) && (l.startedAt < lock.startedAt || (l.startedAt === lock.startedAt && l.key < lock.key)));
    if (otherGc) throw new RepoError('ELOCKED', `another gc is running (lease ${otherGc.key}, pid ${otherGc.pid} on ${otherGc.host})`);
    const backups = leases.filter((l) => l.kind === 'backup' && isLive(l, now));
    const dead = leases.filter((l) => !isLive(l, now - leaseTtlMs()));

    await repo.syncCatalog({ signal });
    const refs = await collectReferences(repo, repo.catalog.backups(), { signal });
    if (refs.unreadable.length > 0) {
      const first = refs.unreadable[0]!;
      throw new RepoError('ECORRUPT', `gc refuses to run: the index of backup ${first.id} is unreadable (${first.error}); run \`fleece verify\``);
    }
    const unreferenced = new Map<string, number>();
    let kept = 0;
    for (const [pack, { size }] of repo.catalog.packs()) {
      if (repo.catalog.packEntries(pack).some((e) => refs.blobs.has(e.id.toString('hex')))) kept++;
      else unreferenced.set(pack, size);
    }

    let deletable: string[];
    const condemned: Record<string, number> = {};
    if (backups.length === 0) {
      deletable = [...unreferenced.keys()];
    } else {
      // A pack condemned at time T may go once every live backup started after T: such a
      // backup read the condemned list before its first dedup lookup and avoided the pack.
      const previous = (await readCondemned(repo.store, { signal }))?.packs ?? {};
      const oldestStart = Math.min(...backups.map((l) => l.startedAt));
      const stamp = Date.now();
      deletable = [];
      for (const pack of unreferenced.keys()) {
        const since = previous[pack];
        if (since !== undefined && since + SKEW_MS < oldestStart) deletable.push(pack);
        else condemned[pack] = since ?? stamp;
      }
    }
    if (!dryRun) {
      await writeCondemned(repo.store, { packs: condemned }, { signal });
      for (const pack of deletable) {
        lock.assertHeld(); // a backup may start once our lease looks dead: stop deleting before that
        await repo.store.delete(packKey(pack), { signal });
        repo.catalog.removePack(pack);
      }
      for (const lease of dead) await repo.store.delete(lease.key, { signal });
    }
    return {
      mode: backups.length === 0 ? 'immediate' : 'deferred',
      liveBackups: backups.length,
      referencedBlobs: refs.blobs.size,
      keptPacks: kept,
      deletedPacks: deletable,
      deletedBytes: deletable.reduce((sum, p) => sum + (unreferenced.get(p) ?? 0), 0),
      condemnedPacks: Object.keys(condemned),
      deletedLeases: dryRun ? 0 : dead.length,
      dryRun,
    };
  } finally {
    await lock.release().catch(() => undefined);
  }
}
