// The fleece daemon: hosts the disks of a state directory, serves each over NBD (`DISK`, and
// `DISK@SNAP` per live snapshot) on DIR/nbd.sock and optional TCP, and owns their bitmaps and
// snapshots. The HTTP API (src/api/) is a thin layer over this class.

import { mkdir, readdir, readFile, rm, writeFile, unlink } from 'node:fs/promises';
import { checkBitmapName } from '../block/bitmap/dirty-bitmap.js';
import { RawFileDevice } from '../block/drivers/raw-file-device.js';
import { describeError, UsageError } from '../core/errors.js';
import { NbdServer, type ListenAddress } from '../nbd/index.js';
import { DaemonError } from './daemon-error.js';
import { DiskExports, snapshotExportName } from './disk-exports.js';
import { copyDataExtents, imageSize } from './import-image.js';
import { LiveDisk, type SnapshotRequest } from './live-disk.js';
import { LiveRestore, type LiveRestoreStatus } from './live-restore.js';
import type { LiveRestoreRequest } from './live-restore-record.js';
import { checkName, StateDir } from './state-dir.js';

export interface DaemonOptions {
  readonly stateDir: string;
  /** Extra TCP listener for NBD. */
  readonly tcp?: { readonly host: string; readonly port: number };
  readonly log?: (line: string) => void;
}

export interface DiskInfo {
  readonly name: string;
  readonly size: number;
  readonly export: string;
  readonly bitmaps: { name: string; granularity: number; enabled: boolean; inconsistent: boolean; dirtyBytes: number | null }[];
  readonly snapshots: string[];
  /** Present while the disk is being restored live from a backup. */
  readonly restore?: LiveRestoreStatus;
}

export class Daemon {
  readonly state: StateDir;
  readonly nbd: NbdServer;
  readonly #exports: DiskExports;
  readonly #disks = new Map<string, LiveDisk>();
  #addresses: ListenAddress[] = [];
  #snapshotCounter = 0;
  readonly #restores = new Map<string, LiveRestore>();
  #log: (line: string) => void = () => {};

  private constructor(state: StateDir, nbd: NbdServer) {
    this.state = state;
    this.nbd = nbd;
    this.#exports = new DiskExports(nbd);
  }

  /** Opens every disk of the state directory and starts serving them. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const state = new StateDir(options.stateDir);
    await mkdir(state.disksDir, { recursive: true });
    await claimPidFile(state.pidFile);
    const daemon = new Daemon(state, new NbdServer({ log: options.log ?? (() => {}) }));
    daemon.#log = options.log ?? (() => {});
    try {
      for (const name of (await readdir(state.disksDir)).sort()) {
        const meta = await readFile(state.meta(name), 'utf8').catch(() => undefined);
        if (meta === undefined) continue;
        const restore = await LiveRestore.resume(state, name, daemon.#log).catch((err: unknown) => {
          daemon.#log(`disk ${name} is not served: its live restore cannot resume: ${describeError(err)}`);
          return null;
        });
        if (restore === null) continue;
        const disk = await LiveDisk.open(name, state, { lower: restore && ((raw) => restore.attach(raw)) });
        daemon.#disks.set(name, disk);
        daemon.#exports.addDisk(disk);
        if (restore) daemon.#startRestore(restore);
      }
      daemon.#addresses.push(await daemon.nbd.listen({ path: state.nbdSocket }));
      if (options.tcp) daemon.#addresses.push(await daemon.nbd.listen(options.tcp));
    } catch (err) {
      await daemon.stop();
      throw err;
    }
    return daemon;
  }

  get addresses(): readonly ListenAddress[] {
    return this.#addresses;
  }

  disk(name: string): LiveDisk {
    const disk = this.#disks.get(name);
    if (!disk) throw new DaemonError('EDISK_NOT_FOUND', `no disk named '${name}'`);
    return disk;
  }

  listDisks(): DiskInfo[] {
    return [...this.#disks.values()].map((d) => describeDisk(d, this.#restores.get(d.name)));
  }

  /** Creates a disk served at once from a backup, copied in the background (see live-restore.ts). */
  async liveRestore(request: LiveRestoreRequest): Promise<DiskInfo> {
    if (this.#disks.has(request.name)) throw new DaemonError('EDISK_EXISTS', `disk '${request.name}' already exists`);
    const restore = await LiveRestore.create(this.state, request, this.#log);
    let disk: LiveDisk;
    try {
      disk = await LiveDisk.open(request.name, this.state, { lower: (raw) => restore.attach(raw) });
    } catch (err) {
      restore.close();
      await rm(this.state.diskDir(request.name), { recursive: true, force: true });
      throw err;
    }
    this.#disks.set(request.name, disk);
    this.#exports.addDisk(disk);
    this.#startRestore(restore);
    return describeDisk(disk, restore);
  }

  #startRestore(restore: LiveRestore): void {
    this.#restores.set(restore.disk, restore);
    restore.start();
  }

  /** Creates a sparse disk of `size` bytes, optionally filled from a raw image. */
  async createDisk(name: string, options: { size?: number; from?: string }): Promise<DiskInfo> {
    checkName('disk', name);
    if (this.#disks.has(name)) throw new DaemonError('EDISK_EXISTS', `disk '${name}' already exists`);
    const fromSize = options.from === undefined ? undefined : await imageSize(options.from);
    const size = options.size ?? fromSize;
    if (size === undefined) throw new UsageError(`disk '${name}': give --size or --from`);
    if (fromSize !== undefined && size < fromSize) throw new UsageError(`disk '${name}': size ${size} is smaller than image '${options.from}' (${fromSize} bytes)`);
    await mkdir(this.state.diskDir(name), { recursive: true });
    try {
      const raw = await RawFileDevice.open(this.state.image(name), { create: size });
      try {
        if (options.from !== undefined) {
          const source = await RawFileDevice.open(options.from, { readOnly: true });
          try {
            await copyDataExtents(source, raw);
          } finally {
            await source.close();
          }
          await raw.flush();
        }
      } finally {
        await raw.close();
      }
      await writeFile(this.state.meta(name), `${JSON.stringify({ name, size, createdAt: new Date().toISOString() })}\n`);
    } catch (err) {
      await rm(this.state.diskDir(name), { recursive: true, force: true });
      throw err;
    }
    const disk = await LiveDisk.open(name, this.state);
    this.#disks.set(name, disk);
    this.#exports.addDisk(disk);
    return describeDisk(disk);
  }

  /** Stops serving a disk, releases its snapshots and deletes its files. */
  async removeDisk(name: string): Promise<void> {
    const disk = this.disk(name);
    for (const snap of [...disk.snapshots.keys()]) await this.releaseSnapshot(name, snap);
    this.#disks.delete(name);
    await this.#exports.remove(name);
    await disk.close();
    this.#restores.get(name)?.close();
    this.#restores.delete(name);
    await rm(this.state.diskDir(name), { recursive: true, force: true });
  }

  /** Takes a point-in-time snapshot and exports it read-only as DISK@SNAP. */
  async createSnapshot(diskName: string, request: Omit<SnapshotRequest, 'name'> & { name?: string }): Promise<{ name: string; export: string; createdAt: string }> {
    const disk = this.disk(diskName);
    let name = request.name;
    while (name === undefined || (request.name === undefined && disk.snapshots.has(name))) name = `snap${++this.#snapshotCounter}`;
    const live = await disk.createSnapshot({ ...request, name });
    this.#exports.addSnapshot(disk, name, live);
    return { name, export: snapshotExportName(diskName, name), createdAt: live.access.snapshot.createdAt.toISOString() };
  }

  async releaseSnapshot(diskName: string, snapshot: string, options: { keepBitmap?: string; granularity?: number } = {}): Promise<{ keptBitmap?: string }> {
    const disk = this.disk(diskName);
    disk.snapshot(snapshot);
    if (options.keepBitmap !== undefined) checkBitmapName(options.keepBitmap);
    await this.#exports.remove(snapshotExportName(diskName, snapshot));
    const kept = await disk.releaseSnapshot(snapshot, options);
    return kept ? { keptBitmap: kept.name } : {};
  }

  listSnapshots(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const disk of this.#disks.values()) {
      for (const [name, live] of disk.snapshots) {
        out.push({ disk: disk.name, export: snapshotExportName(disk.name, name), createdAt: live.access.snapshot.createdAt.toISOString(), ...live.access.snapshot.stats });
      }
    }
    return out;
  }

  stats(): Record<string, unknown> {
    return {
      nbdConnections: this.nbd.connectionCount,
      disks: [...this.#disks.values()].map((d) => ({
        name: d.name,
        size: d.size,
        cbwCopies: d.cbwCopies,
        snapshots: [...d.snapshots.values()].map((s) => s.access.snapshot.stats),
        bitmaps: describeDisk(d).bitmaps,
      })),
    };
  }

  /** Stops NBD, releases snapshots, saves bitmaps clean, closes disks, removes the pid file. */
  async stop(): Promise<void> {
    await this.nbd.close();
    for (const disk of this.#disks.values()) await disk.close();
    this.#disks.clear();
    for (const restore of this.#restores.values()) restore.close();
    this.#restores.clear();
    await unlink(this.state.pidFile).catch(() => {});
  }
}

function describeDisk(disk: LiveDisk, restore?: LiveRestore): DiskInfo {
  return {
    name: disk.name,
    size: disk.size,
    export: disk.name,
    bitmaps: disk.bitmaps.list().map((b) => ({
      name: b.name,
      granularity: b.granularity,
      enabled: b.enabled,
      inconsistent: b.inconsistent,
      dirtyBytes: b.inconsistent ? null : b.dirtyBytes,
    })),
    snapshots: [...disk.snapshots.keys()],
    ...(restore ? { restore: restore.status } : {}),
  };
}

/** One daemon per state directory: a live pid in daemon.pid refuses the start. */
async function claimPidFile(path: string): Promise<void> {
  const old = Number((await readFile(path, 'utf8').catch(() => '')).trim());
  if (Number.isInteger(old) && old > 0 && old !== process.pid) {
    let alive = true;
    try {
      process.kill(old, 0);
    } catch {
      alive = false;
    }
    if (alive) throw new DaemonError('EDAEMON_RUNNING', `a daemon (pid ${old}) already serves this state directory`);
  }
  await writeFile(path, `${process.pid}\n`);
}
