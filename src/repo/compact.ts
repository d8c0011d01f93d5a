// Compact: repacks packs whose live (referenced) bytes are below a threshold. Live blobs are
// copied verbatim (checked, never re-encoded) into new packs, then the old packs are deleted.
// It holds the gc lock, so no backup starts meanwhile, and it waits for backups already running
// before it marks, so nothing it deletes can be needed by one (see repository-format.md).

import { RepoError } from './errors.js';
import { isLive, Lease, readLeases } from './leases.js';
import { packKey } from './pack-format.js';
import { collectReferences, type References } from './references.js';
import type { Repository } from './repository.js';
import type { BlobLocation } from './catalog.js';
import { PackWriter } from './pack-writer.js';

export interface CompactOptions {
  /** Repack packs whose live bytes are below this fraction of their size (default 0.5). */
  readonly threshold?: number;
  readonly dryRun?: boolean;
  /** How long to wait for backups that were already running (default 30 min). */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

export interface CompactReport {
  /** Packs selected for repacking (all deleted unless dryRun or damaged). */
  readonly repackedPacks: readonly string[];
  readonly repackedBytes: number;
  /** Live blobs copied into new packs, and their stored bytes. */
  readonly copiedBlobs: number;
  readonly copiedBytes: number;
  readonly newPacks: number;
  /** Stored bytes the repository shrinks by. */
  readonly freedBytes: number;
  /** Packs kept because a live blob in them failed its checks and has no good copy elsewhere. */
  readonly damagedPacks: readonly { readonly pack: string; readonly error: string }[];
  /** Backups that were running when compact started, waited for before marking. */
  readonly waitedForBackups: number;
  readonly dryRun: boolean;
}

/** Allowance for clock skew between hosts comparing lease times (as in gc). */
const SKEW_MS = 2000;

export async function runCompact(repo: Repository, options: CompactOptions = {}): Promise<CompactReport> {
  const { signal } = options;
  const threshold = options.threshold ?? 0.5;
  if (!(threshold > 0 && threshold <= 1)) throw new RepoError('EINVALID', `compact threshold ${threshold} outside (0, 1]`);
  const dryRun = options.dryRun ?? false;
  // The gc lock: other gcs and compacts stop, backups that start from now on wait for us.
  const lock = await Lease.acquire(repo.store, 'gc', { signal });
  const lockedAt = Date.now();
  try {
    const leases = await readLeases(repo.store, { signal });
    const now = Date.now();
    const otherGc = leases.find((l) => l.kind === 'gc' && l.key !== lock.key && isLive(l, now) && (l.startedAt < lock.startedAt || (l.startedAt === lock.startedAt && l.key < lock.key)));
    if (otherGc) throw new RepoError('ELOCKED', `a gc or compact is running (lease ${otherGc.key}, pid ${otherGc.pid} on ${otherGc.host})`);
    // Backups that may have started before our lock and be deduplicating against old packs.
    const running = leases.filter((l) => l.kind === 'backup' && isLive(l, now) && l.startedAt <= lockedAt + SKEW_MS);

    if (running.length > 0 && !dryRun) {
      // A running backup may reuse any blob, even one no manifest references yet: let those
      // backups commit (or die) first. New ones wait for our lock, so afterwards none runs.
      await waitForBackups(repo, new Set(running.map((l) => l.key)), options.waitMs ?? 30 * 60_000, signal);
    }
    const refs = await mark(repo, signal);
    const selected = selectPacks(repo, refs, threshold);
    const sizes = repo.catalog.packs();
    const repackedBytes = selected.reduce((sum, p) => sum + (sizes.get(p)?.size ?? 0), 0);
    if (dryRun || selected.length === 0) {
      const live = selected.reduce((sum, p) => sum + liveBlobs(repo, p, refs).reduce((s, b) => s + b.storedLength, 0), 0);
      return { repackedPacks: selected, repackedBytes, copiedBlobs: 0, copiedBytes: dryRun ? live : 0, newPacks: 0, freedBytes: dryRun ? repackedBytes - live : 0, damagedPacks: [], waitedForBackups: dryRun ? 0 : running.length, dryRun };
    }

    const copier = new Copier(repo, new Set(selected), signal);
    await copier.copy(selected, refs);
    await copier.flush();

    const deleted: string[] = [];
    for (const pack of selected) {
      if (copier.damaged.has(pack) || copier.newPacks.has(pack)) continue;
      lock.assertHeld(); // once our lease may look dead a backup may start: delete nothing after
      await repo.store.delete(packKey(pack), { signal });
      repo.catalog.removePack(pack);
      deleted.push(pack);
    }
    const deletedBytes = deleted.reduce((sum, p) => sum + (copier.sizes.get(p) ?? 0), 0);
    const after = repo.catalog.packs();
    const fresh = [...copier.newPacks].filter((p) => !copier.sizes.has(p));
    const writtenBytes = fresh.reduce((sum, p) => sum + (after.get(p)?.size ?? 0), 0);
    return {
      repackedPacks: deleted,
      repackedBytes: deletedBytes,
      copiedBlobs: copier.blobs,
      copiedBytes: copier.bytes,
      newPacks: fresh.length,
      freedBytes: deletedBytes - writtenBytes,
      damagedPacks: [...copier.damaged].map(([pack, error]) => ({ pack, error })),
      waitedForBackups: running.length,
      dryRun,
    };
  } finally {
    await lock.release().catch(() => undefined);
  }
}

async function mark(repo: Repository, signal?: AbortSignal): Promise<References> {
  await repo.syncCatalog({ signal });
  const refs = await collectReferences(repo, repo.catalog.backups(), { signal });
  if (refs.unreadable.length > 0) {
    const first = refs.unreadable[0]!;
    throw new RepoError('ECORRUPT', `compact refuses to run: the index of backup ${first.id} is unreadable (${first.error}); run \`fleece verify\``);
  }
  return refs;
}

/** Packs whose referenced stored bytes are below `threshold` of their size. */
function selectPacks(repo: Repository, refs: References, threshold: number): string[] {
  const selected: string[] = [];
  for (const [pack, { size }] of repo.catalog.packs()) {
    const live = liveBlobs(repo, pack, refs).reduce((sum, b) => sum + b.storedLength, 0);
    if (live < threshold * size) selected.push(pack);
  }
  return selected;
}

function liveBlobs(repo: Repository, pack: string, refs: References): BlobLocation[] {
  return repo.catalog.packEntries(pack).filter((e) => refs.blobs.has(e.id.toString('hex')));
}

/** Copies live blobs out of the selected packs into new packs, each blob once. */
class Copier {
  readonly packs: PackWriter;
  readonly damaged = new Map<string, string>();
  /** Ids of the packs written. Copied verbatim in the same order, a pack can come out identical to
   * an old one (same id, so put-if-absent kept the old object): such a pack must stay. */
  readonly newPacks = new Set<string>();
  readonly sizes: Map<string, number>;
  blobs = 0;
  bytes = 0;
  readonly #repo: Repository;
  readonly #selected: Set<string>;
  readonly #signal: AbortSignal | undefined;
  readonly #copied = new Set<string>();

  constructor(repo: Repository, selected: Set<string>, signal?: AbortSignal) {
    this.#repo = repo;
    this.#selected = selected;
    this.#signal = signal;
    this.packs = new PackWriter(repo.store, repo.config.packSize, (id, size, entries) => {
      repo.catalog.addPack(id, size, entries);
      this.newPacks.add(id);
    });
    const all = repo.catalog.packs();
    this.sizes = new Map([...selected].map((p) => [p, all.get(p)?.size ?? 0]));
  }

  /** Copies every referenced blob of the selected packs that has no copy outside them yet. */
  async copy(selected: readonly string[], refs: References): Promise<void> {
    for (const pack of selected) {
      const todo = liveBlobs(this.#repo, pack, refs).filter((b) => !this.#copied.has(b.id.toString('hex')) && !this.#elsewhere(b));
      if (todo.length === 0) continue;
      let bytes: Buffer | undefined;
      try {
        bytes = await this.#repo.store.get(packKey(pack), { signal: this.#signal });
      } catch (err) {
        this.damaged.set(pack, `unreadable: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      for (const blob of todo) {
        const stored = bytes.subarray(blob.offset, blob.offset + blob.storedLength);
        try {
          if (stored.length !== blob.storedLength) throw new RepoError('ECORRUPT', `pack ${pack.slice(0, 16)} is truncated`);
          this.#repo.codec.open(blob, stored, `pack ${pack.slice(0, 16)}`); // check only; the stored bytes are copied as they are
        } catch (err) {
          this.damaged.set(pack, err instanceof Error ? err.message : String(err));
          continue;
        }
        await this.packs.add(blob.id, blob.type, { stored: Buffer.from(stored), flags: blob.flags, rawLength: blob.rawLength, crc: blob.crc }, this.#signal);
        this.#copied.add(blob.id.toString('hex'));
        this.blobs++;
        this.bytes += blob.storedLength;
      }
    }
  }

  async flush(): Promise<void> {
    await this.packs.flush(this.#signal);
  }

  /** True when the blob also sits in a pack that stays. */
  #elsewhere(blob: BlobLocation): boolean {
    return this.#repo.catalog.locate(blob.id).some((l) => !this.#selected.has(l.pack));
  }
}

/** Polls until none of the given backup leases is live any more. */
async function waitForBackups(repo: Repository, keys: Set<string>, waitMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const now = Date.now();
    const live = (await readLeases(repo.store, { signal })).filter((l) => keys.has(l.key) && isLive(l, now));
    if (live.length === 0) return;
    if (now > deadline) throw new RepoError('ELOCKED', `backup lease ${live[0]!.key} (pid ${live[0]!.pid}) is still live after ${waitMs} ms: compact deleted nothing, run it again later`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    signal?.throwIfAborted();
  }
}
