// The backup engine: reads a source slot by slot, skips zeros, hashes in a worker pool, stores
// only chunks the repository lacks (the workers seal them into packs, the main thread uploads
// the packs), builds the paged index and commits with the manifest. Holds a lease throughout
// so a concurrent gc keeps everything it may reference.

import { availableParallelism } from 'node:os';
import { throwIfAborted } from '../core/errors.js';
import { runInLanes, WorkLanes, type Run } from './work-lanes.js';
import type { BackupSource } from './backup-source.js';
import { BlobType } from './blob-codec.js';
import { ChunkPool } from './chunk-pool.js';
import { readCondemned, waitForGc } from './condemned.js';
import { IndexBuilder } from './index-builder.js';
import { pageCount, pageSlot, SLOTS_PER_PAGE, slotCount } from './index-format.js';
import { Lease } from './leases.js';
import type { Manifest } from './manifest.js';
import { PackUploads } from './pack-uploads.js';
import { Repository } from './repository.js';

export interface BackupProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
  readonly newChunks: number;
  readonly newBytes: number;
}

export interface BackupOptions {
  readonly disk: string;
  readonly tags?: readonly string[];
  /** Time of the point-in-time view (default: now). */
  readonly time?: Date;
  /** Parent backup id: with `changed`, slots outside `changed` are copied from it unread. */
  readonly parent?: string;
  /** Byte ranges that changed since the parent (e.g. from a dirty bitmap). */
  readonly changed?: readonly { readonly offset: number; readonly length: number }[];
  readonly checkpoint?: string;
  readonly workers?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: BackupProgress) => void;
}

const BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Pack uploads at once; batches wait while they are all busy (bounded memory: each holds a
 * 32 MiB pack buffer). Two workers hash incompressible data faster (~2 GB/s here) than a disk
 * stores it (~0.85 GB/s with O_DIRECT), so a long random stretch fills every slot; four let
 * the uploads run on while the workers go ahead (two left them idle half that time).
 */
const UPLOADS_IN_FLIGHT = 4;
/** Work left in one lane that a second lane may take half of (see work-lanes.ts). */
const MIN_LANE_SPLIT = 64 * 1024 * 1024;

export async function runBackup(repo: Repository, source: BackupSource, options: BackupOptions): Promise<Manifest> {
  const { signal } = options;
  const chunkSize = repo.config.chunkSize;
  const slots = slotCount(source.size, chunkSize);
  const lease = await Lease.acquire(repo.store, 'backup', { signal });
  // Workers build and hash whole packs; the main thread only uploads them and records them.
  let uploads: PackUploads | undefined = undefined;
  const pool: ChunkPool = new ChunkPool(repo.masterKey, repo.config.compression.level, options.workers, {
    packSize: repo.config.packSize,
    onPack: (pack, worker) => uploads!.start(pack, worker),
  });
  uploads = new PackUploads(repo.store, {
    onStored: (id, size, entries) => repo.catalog.addPack(id, size, entries),
    recycle: (worker, slot) => pool.recycle(worker, slot),
  }, { signal, maxInFlight: UPLOADS_IN_FLIGHT });
  // Overlaps the wait for gc and the catalog sync; the first lookups come after both.
  const prefetchDone = new AbortController();
  const prefetch = repo.catalog.prefetch(prefetchDone.signal);
  try {
    // Lease first, then wait out any gc, then read what gc condemned: see repository-format.md.
    await waitForGc(repo.store, { signal });
    const condemned = new Set(Object.keys((await readCondemned(repo.store, { signal }))?.packs ?? {}));
    await repo.syncCatalog({ signal });

    const parent = options.parent ? repo.resolveBackup(options.parent) : undefined;
    const incremental = parent !== undefined && options.changed !== undefined && parent.size === source.size && parent.chunkSize === chunkSize;
    const parentPages = incremental ? await repo.pageIds(parent, { signal }) : undefined;
    const todoSlots = changedSlots(slots, chunkSize, incremental ? options.changed : undefined);

    // Ids stored (or queued) by this backup; with the catalog, the dedup lookup.
    const session = new Set<string>();
    const known = (id: Buffer): boolean => session.has(id.toString('hex')) || repo.catalog.locate(id).some((l) => !condemned.has(l.pack));
    let newChunks = 0;
    let newBytes = 0;
    let reused = 0;
    let zeroSlots = 0;
    let bytesDone = 0;
    const storeBlob = async (id: Buffer, type: number, plain: Buffer): Promise<void> => {
      if (known(id)) return;
      session.add(id.toString('hex'));
      await pool.sealBlob(id, type, plain);
    };
    const todoPerPage = new Int32Array(pageCount(slots));
    for (const [first, count] of todoSlots) {
      for (let s = first; s < first + count; s++) todoPerPage[Math.floor(s / SLOTS_PER_PAGE)]!++;
    }
    const index = new IndexBuilder(slots, todoPerPage, (p) => parentPages?.[p], {
      seed: async (p) => (parentPages ? repo.page(parentPages[p]!, { signal }) : undefined),
      store: storeBlob,
      idOf: (plain) => repo.codec.idOf(plain),
    });
    if (parentPages) {
      for (let p = 0; p < parentPages.length; p++) {
        if (todoPerPage[p] !== 0) continue;
        // Untouched page: count its slots from the parent without storing anything.
        const page = await repo.page(parentPages[p]!, { signal });
        for (let i = 0; i < page.length / 32; i++) if (pageSlot(page, i).every((b) => b === 0)) zeroSlots++;
        else reused++;
      }
    }

    // Block status pays where long stretches may read as zero (a full backup, a long changed
    // run): it skips their reads. A batch of scattered runs (dirty clusters) is read as it is: a
    // status query across its span would cover far more than it reads, one per run would cost as
    // much as the read, and the workers' zero check still finds the zero slots.
    const zeroStatus = async (runs: readonly Run[]): Promise<boolean[]> =>
      runs.length === 1 ? zeroSlotsByStatus(source, runs[0]!, chunkSize, signal) : new Array<boolean>(runs.reduce((sum, [, count]) => sum + count, 0)).fill(false);

    // A batch is one or more runs of slots (scattered dirty clusters are grouped, so each worker
    // round trip and index update covers many of them); its reads are all in flight at once,
    // which is what keeps a cold disk or an NBD source busy.
    const processBatch = async (runs: readonly Run[]): Promise<void> => {
      throwIfAborted(signal);
      uploads.throwIfFailed(); // zeros and known chunks never wait in ready(), which would rethrow it
      const layout = runs.map(([first, count]) => ({ first, count, length: Math.min(count * chunkSize, source.size - first * chunkSize) }));
      const length = layout.reduce((sum, r) => sum + r.length, 0);
      const slotsInBatch = layout.reduce((sum, r) => sum + r.count, 0);
      const zeroByStatus = await zeroStatus(runs);
      let ids: (Buffer | undefined)[];
      if (zeroByStatus.every(Boolean)) {
        ids = new Array<undefined>(slotsInBatch).fill(undefined);
      } else {
        const buf = pool.buffer(length);
        // Read only the slots block status did not report as zero; zero-fill the rest. Runs sit
        // back to back in `buf` (only the disk's last slot can be short, and it comes last).
        const reads: Promise<void>[] = [];
        let slot = 0;
        let at = 0;
        for (const r of layout) {
          for (let i = 0; i < r.count; ) {
            let j = i;
            while (j < r.count && zeroByStatus[slot + j] === zeroByStatus[slot + i]) j++;
            const runStart = i * chunkSize;
            const runEnd = Math.min(r.length, j * chunkSize);
            const target = buf.subarray(at + runStart, at + runEnd);
            if (zeroByStatus[slot + i]) target.fill(0);
            else reads.push(source.read(r.first * chunkSize + runStart, target, { signal }));
            i = j;
          }
          slot += r.count;
          at += r.length;
        }
        await Promise.all(reads);
        const hashed = await pool.hash(buf, chunkSize);
        ids = hashed.ids;
        const fresh: number[] = [];
        // One catalog query for the batch; no await between the lookup and session.add.
        const stored = repo.catalog.locateMany(ids.filter((id): id is Buffer => id !== undefined));
        for (let i = 0; i < slotsInBatch; i++) {
          const id = ids[i];
          if (!id) continue;
          const hex = id.toString('hex');
          if (session.has(hex) || stored.get(hex)?.some((l) => !condemned.has(l.pack))) reused++;
          else {
            session.add(hex);
            fresh.push(i);
          }
        }
        // Pack buffers bound memory: wait for one only when there is something to seal (zeros
        // and known chunks go on meanwhile).
        if (fresh.length > 0) await uploads.ready();
        // Batches run concurrently: read the sum only after the await, or updates are lost.
        const sealedBytes = await pool.seal(hashed.handle, fresh);
        newBytes += sealedBytes;
        newChunks += fresh.length;
      }
      zeroSlots += ids.filter((id) => !id).length;
      let slot = 0;
      for (const r of layout) {
        await index.set(r.first, ids.slice(slot, slot + r.count));
        slot += r.count;
      }
      bytesDone += length;
      options.onProgress?.({ bytesDone, bytesTotal: source.size, newChunks, newBytes });
    };

    const lanes = new WorkLanes(todoSlots, Math.max(1, Math.floor(BATCH_BYTES / chunkSize)), Math.ceil(MIN_LANE_SPLIT / chunkSize));
    const perLane = Math.max(1, Math.ceil(((options.workers ?? availableParallelism()) * 3) / 2));
    await runInLanes(lanes, processBatch, perLane, signal);
    const root = index.root();
    const rootId = repo.codec.idOf(root);
    await storeBlob(rootId, BlobType.root, root);
    await pool.flushPacks();
    await uploads.drain();

    const manifest: Manifest = {
      version: 1,
      id: Repository.newBackupId(),
      disk: options.disk,
      size: source.size,
      chunkSize,
      time: (options.time ?? new Date()).toISOString(),
      parent: parent?.id ?? null,
      tags: [...(options.tags ?? [])],
      checkpoint: options.checkpoint ?? null,
      counts: { slots, zeroSlots, newChunks, newBytes, reusedChunks: reused },
      root: rootId.toString('hex'),
      pageCount: pageCount(slots),
      host: Repository.host(),
    };
    lease.assertHeld();
    await repo.writeManifest(manifest, { signal });
    return manifest;
  } finally {
    prefetchDone.abort();
    await prefetch;
    await uploads.drain().catch(() => undefined);
    await pool.close();
    await lease.release().catch(() => undefined);
  }
}

/** Runs of slots to back up: all of them, or those overlapping `changed`. */
function changedSlots(slots: number, chunkSize: number, changed: BackupOptions['changed']): Run[] {
  if (!changed) return slots > 0 ? [[0, slots]] : [];
  const marks = new Uint8Array(slots);
  for (const { offset, length } of changed) {
    if (length <= 0) continue;
    const end = Math.min(slots, Math.ceil((offset + length) / chunkSize));
    for (let s = Math.floor(offset / chunkSize); s < end; s++) marks[s] = 1;
  }
  const runs: Run[] = [];
  for (let s = 0; s < slots; s++) {
    if (!marks[s]) continue;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === s) last[1]++;
    else runs.push([s, 1]);
  }
  return runs;
}

/** Per slot of the run: true when the source's block status says it reads as zero. */
async function zeroSlotsByStatus(source: BackupSource, [first, count]: Run, chunkSize: number, signal?: AbortSignal): Promise<boolean[]> {
  const result = new Array<boolean>(count).fill(false);
  if (!source.blockStatus || source.capabilities?.canBlockStatus === false) return result;
  const start = first * chunkSize;
  const end = Math.min(source.size, (first + count) * chunkSize);
  // Extents ascend: a slot is zero when one zero extent covers it whole.
  for (let at = start; at < end; ) {
    const extents = await source.blockStatus(at, end - at, { signal });
    if (extents.length === 0) break;
    for (const e of extents) {
      if (e.zero) {
        const from = Math.max(0, Math.ceil((e.offset - start) / chunkSize));
        for (let i = from; i < count && Math.min(end, start + (i + 1) * chunkSize) <= e.offset + e.length; i++) result[i] = true;
      }
      at = e.offset + e.length;
    }
  }
  return result;
}
