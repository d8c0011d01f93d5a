// A daemon disk restored live from a backup: the disk is served at once as an overlay over the
// backup (unread regions are fetched on demand, guest writes stay local) while every remaining
// block is copied in the background. The fill map and this record survive a restart, so the
// copy resumes; once it completes the record goes and the disk opens as a plain disk.

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { BlockDevice } from '../block/block-device.js';
import { BackupDevice } from '../block/drivers/backup-device.js';
import { RawFileDevice } from '../block/drivers/raw-file-device.js';
import { describeError, UsageError } from '../core/errors.js';
import { DurableOverlayDevice } from '../jobs/instant-restore/durable-overlay.js';
import { fillThrottle } from '../jobs/instant-restore/fill-throttle.js';
import { syncDir } from '../core/sync-dir.js';
import { loadFillMap, saveFillMap } from '../jobs/instant-restore/fill-map.js';
import { OverlayDevice } from '../jobs/instant-restore/overlay-device.js';
import type { Manifest } from '../repo/manifest.js';
import { waitForGc } from '../repo/condemned.js';
import { Lease } from '../repo/leases.js';
import { Repository } from '../repo/repository.js';
import { catalogPathFor, openStore } from '../repo/stores/open-store.js';
import { DaemonError } from './daemon-error.js';
import { readRecord, removeRecord, restorePaths, writeRecord, type LiveRestoreRecord, type LiveRestoreRequest } from './live-restore-record.js';
import { checkName, type StateDir } from './state-dir.js';

export interface LiveRestoreStatus {
  readonly backup: string;
  readonly state: 'copying' | 'done' | 'failed' | 'stopped';
  readonly doneBytes: number;
  readonly totalBytes: number;
  readonly percent: number;
  readonly error?: string;
}

export class LiveRestore {
  readonly disk: string;
  readonly manifest: Manifest;
  readonly #state: StateDir;
  readonly #repo: Repository;
  readonly #backup: BackupDevice;
  readonly #initial: Uint8Array | undefined;
  readonly #rateLimit: number | undefined;
  readonly #log: (line: string) => void;
  // A backup-kind lease for as long as the copy runs: gc then keeps every pack the backup uses,
  // even if the backup is deleted meanwhile (its packs are condemned, never deleted, while we live).
  readonly #lease: Lease;
  #device: DurableOverlayDevice | undefined;
  #finished = false;

  private constructor(state: StateDir, disk: string, repo: Repository, lease: Lease, backup: BackupDevice, initial: Uint8Array | undefined, rateLimit: number | undefined, log: (line: string) => void) {
    this.#state = state;
    this.#lease = lease;
    this.disk = disk;
    this.#repo = repo;
    this.#backup = backup;
    this.manifest = backup.manifest;
    this.#initial = initial;
    this.#rateLimit = rateLimit;
    this.#log = log;
  }

  /** Creates the disk's files for a new live restore (the image reads as zero; nothing is local yet). */
  static async create(state: StateDir, request: LiveRestoreRequest, log: (line: string) => void): Promise<LiveRestore> {
    checkName('disk', request.name);
    const repo = await openRepository(request);
    let lease: Lease | undefined;
    try {
      lease = await protect(repo);
      const manifest = repo.resolveBackup(request.backup);
      checkGranularity(manifest);
      await mkdir(state.disksDir, { recursive: true });
      await mkdir(state.diskDir(request.name)).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' ? new DaemonError('EDISK_EXISTS', `disk '${request.name}' already exists`) : err;
      });
      try {
        const raw = await RawFileDevice.open(state.image(request.name), { create: manifest.size });
        await raw.flush().finally(() => raw.close());
        // The record first: a disk.json without it would open as a plain, empty disk.
        const { name: _name, ...rest } = request;
        await writeRecord(state, request.name, { ...rest, backup: manifest.id, startedAt: new Date().toISOString() });
        await writeFile(state.meta(request.name), `${JSON.stringify({ name: request.name, size: manifest.size, createdAt: new Date().toISOString(), restoredFrom: manifest.id })}\n`);
        await syncDir(state.diskDir(request.name));
        return new LiveRestore(state, request.name, repo, lease, await BackupDevice.open(repo, manifest), undefined, request.rateLimit, log);
      } catch (err) {
        await rm(state.diskDir(request.name), { recursive: true, force: true });
        throw err;
      }
    } catch (err) {
      await lease?.release().catch(() => undefined);
      repo.close();
      throw err;
    }
  }

  /** Reopens a restore found in the state directory, or undefined when the disk is not restoring. */
  static async resume(state: StateDir, disk: string, log: (line: string) => void): Promise<LiveRestore | undefined> {
    const record = await readRecord(state, disk);
    if (!record) return undefined;
    const repo = await openRepository({ ...record, name: disk });
    let lease: Lease | undefined;
    try {
      lease = await protect(repo);
      const manifest = await repo.readManifest(record.backup);
      checkGranularity(manifest);
      const blocks = Math.ceil(manifest.size / manifest.chunkSize);
      const initial = (await loadFillMap(restorePaths(state, disk).map, manifest.chunkSize, blocks)) ?? new Uint8Array(blocks);
      return new LiveRestore(state, disk, repo, lease, await BackupDevice.open(repo, manifest), initial, record.rateLimit, log);
    } catch (err) {
      await lease?.release().catch(() => undefined);
      repo.close();
      throw err;
    }
  }

  /** The device under the disk's dirty tracker: the overlay of the backup and the local image. */
  attach(raw: RawFileDevice): BlockDevice {
    const paths = restorePaths(this.#state, this.disk);
    const g = this.manifest.chunkSize;
    if (raw.size !== this.manifest.size) throw new UsageError(`disk '${this.disk}' image is ${raw.size} bytes, backup ${this.manifest.id} is ${this.manifest.size}`);
    // Resumed: blocks outside the map may hold bytes of writes never flushed; they are copied again.
    const overlay = new OverlayDevice(this.#backup, raw, { granularity: g, initial: this.#initial, staleOverlay: this.#initial !== undefined });
    this.#device = new DurableOverlayDevice(overlay, {
      save: async (blocks) => {
        if (!this.#finished) await saveFillMap(paths.map, blocks, g);
      },
      log: (line) => this.#log(`disk ${this.disk}: ${line}`),
    });
    return this.#device;
  }

  /** Starts (or resumes) the background copy; at the end the disk becomes a plain disk. */
  start(): void {
    const device = this.#device;
    if (!device) throw new Error('live restore started before attach');
    const started = Date.now();
    device.startFill({ throttle: this.#rateLimit ? fillThrottle(this.#rateLimit) : undefined }).then(
      async () => {
        this.#finished = true;
        await removeRecord(this.#state, this.disk);
        await rm(restorePaths(this.#state, this.disk).dir, { recursive: true, force: true });
        await this.#lease.release().catch(() => undefined);
        this.#log(`disk ${this.disk}: restore of backup ${this.manifest.id} complete (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      },
      (err: unknown) => {
        if (device.status.state === 'failed') this.#log(`disk ${this.disk}: restore copy failed: ${describeError(err)}; it resumes when the daemon restarts`);
      },
    ).catch((err: unknown) => this.#log(`disk ${this.disk}: finishing the restore failed: ${describeError(err)}`));
  }

  get status(): LiveRestoreStatus {
    const s = this.#device?.status ?? { state: 'copying' as const, doneBlocks: 0, totalBlocks: 1 };
    const g = this.manifest.chunkSize;
    const doneBytes = Math.min(this.manifest.size, s.doneBlocks * g);
    const state = s.state === 'done' && !this.#finished ? 'copying' : s.state;
    return {
      backup: this.manifest.id,
      state,
      doneBytes,
      totalBytes: this.manifest.size,
      percent: this.manifest.size === 0 ? 100 : Math.floor((doneBytes / this.manifest.size) * 1000) / 10,
      ...(s.error ? { error: s.error } : {}),
    };
  }

  /** Call after the disk (and so the overlay) is closed. */
  close(): void {
    // The lease goes first (a process exiting now leaves it to expire, which is also safe).
    void this.#lease.release().catch(() => undefined).finally(() => this.#repo.close());
  }
}

/** Lease first, then wait out a running gc: from then on the backup's packs stay (see gc.ts). */
async function protect(repo: Repository): Promise<Lease> {
  const lease = await Lease.acquire(repo.store, 'backup');
  try {
    await waitForGc(repo.store);
    await repo.syncCatalog();
    return lease;
  } catch (err) {
    await lease.release().catch(() => undefined);
    throw err;
  }
}

async function openRepository(request: LiveRestoreRequest | (LiveRestoreRecord & { name: string })): Promise<Repository> {
  let keyFile: Buffer | undefined;
  if (request.keyFile !== undefined) {
    try {
      keyFile = await readFile(request.keyFile);
    } catch (err) {
      throw new UsageError(`cannot read key file '${request.keyFile}': ${describeError(err)}`, { cause: err });
    }
  }
  const store = await openStore(request.repo);
  const repo = await Repository.open(store, { secret: { keyFile, passphrase: request.passphrase }, catalogPath: catalogPathFor(request.repo) });
  try {
    await repo.syncCatalog();
  } catch (err) {
    repo.close();
    throw err;
  }
  return repo;
}

function checkGranularity(manifest: Manifest): void {
  const g = manifest.chunkSize;
  if (!Number.isInteger(Math.log2(g))) throw new UsageError(`backup ${manifest.id} has chunk size ${g}, not a power of two: live restore needs one`);
}
