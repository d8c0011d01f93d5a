// One disk hosted by the daemon: raw image → dirty tracker → copy-before-write, its persistent
// bitmaps (in use on disk while open, saved clean on close) and its live snapshots.

import { mkdir, readdir, unlink } from 'node:fs/promises';
import { loadBitmap, markInUse, saveBitmap } from '../block/bitmap/bitmap-file.js';
import { BitmapSet } from '../block/bitmap/bitmap-set.js';
import { DirtyBitmap } from '../block/bitmap/dirty-bitmap.js';
import type { BlockDevice } from '../block/block-device.js';
import { RawFileDevice } from '../block/drivers/raw-file-device.js';
import { CopyBeforeWriteDevice } from '../block/filters/copy-before-write.js';
import type { CacheFullPolicy } from '../block/filters/snapshot.js';
import { SnapshotAccessDevice } from '../block/filters/snapshot-access.js';
import { DirtyTrackerDevice } from '../block/filters/dirty-tracker.js';
import { DaemonError } from './daemon-error.js';
import { checkName, type StateDir } from './state-dir.js';

export interface SnapshotRequest {
  readonly name: string;
  readonly bitmap?: string;
  readonly ramBytes?: number;
  readonly spillDir?: string;
  readonly spillMaxBytes?: number;
  readonly onFull?: CacheFullPolicy;
  readonly readOnce?: boolean;
}

/** A live snapshot: its access device and the bitmaps frozen at its point in time. */
export interface LiveSnapshot {
  readonly access: SnapshotAccessDevice;
  readonly frozenBitmaps: readonly DirtyBitmap[];
  /** Everything written since the point in time (kept by release --keep-bitmap). */
  readonly since: DirtyBitmap;
}

export class LiveDisk {
  readonly name: string;
  readonly #state: StateDir;
  readonly #raw: RawFileDevice;
  readonly bitmaps: BitmapSet;
  readonly #cbw: CopyBeforeWriteDevice;
  readonly #snapshots = new Map<string, LiveSnapshot>();

  private constructor(name: string, state: StateDir, raw: RawFileDevice, bitmaps: BitmapSet, lower: BlockDevice = raw) {
    this.name = name;
    this.#state = state;
    this.#raw = raw;
    this.bitmaps = bitmaps;
    this.#cbw = new CopyBeforeWriteDevice(new DirtyTrackerDevice(lower, bitmaps));
  }

  /** Opens a disk's image and bitmaps, marking each consistent bitmap in use before any write; `lower` may put a device (a live restore's overlay) between image and tracker. */
  static async open(name: string, state: StateDir, options: { lower?: (raw: RawFileDevice) => BlockDevice } = {}): Promise<LiveDisk> {
    const raw = await RawFileDevice.open(state.image(name));
    const bitmaps = new BitmapSet();
    await mkdir(state.bitmapsDir(name), { recursive: true });
    for (const file of (await readdir(state.bitmapsDir(name))).sort()) {
      if (!file.endsWith('.bitmap')) continue;
      const path = `${state.bitmapsDir(name)}/${file}`;
      const bitmap = await loadBitmap(path);
      if (!bitmap.inconsistent) await markInUse(path);
      if (bitmap.size !== raw.size && !bitmap.inconsistent) bitmap.resize(raw.size);
      bitmaps.add(bitmap);
    }
    return new LiveDisk(name, state, raw, bitmaps, options.lower?.(raw));
  }

  /** The guest-facing device (writes go through copy-before-write and the dirty tracker). */
  get device(): BlockDevice {
    return this.#cbw;
  }

  get size(): number {
    return this.#raw.size;
  }

  /** Old clusters copied into fleecing caches since the disk was opened. */
  get cbwCopies(): number {
    return this.#cbw.copies;
  }

  get snapshots(): ReadonlyMap<string, LiveSnapshot> {
    return this.#snapshots;
  }

  snapshot(name: string): LiveSnapshot {
    const snap = this.#snapshots.get(name);
    if (!snap) throw new DaemonError('ESNAPSHOT_NOT_FOUND', `disk '${this.name}' has no snapshot '${name}'`);
    return snap;
  }

  async addBitmap(name: string, options: { granularity?: number; enabled?: boolean }): Promise<DirtyBitmap> {
    const bitmap = this.bitmaps.add(new DirtyBitmap(name, this.size, options));
    try {
      await saveBitmap(this.#state.bitmap(this.name, name), bitmap, { inUse: true });
    } catch (err) {
      this.bitmaps.remove(name);
      throw err;
    }
    return bitmap;
  }

  /** Removes a bitmap (the only thing allowed on an inconsistent one). */
  async removeBitmap(name: string): Promise<void> {
    this.bitmaps.remove(name);
    await unlink(this.#state.bitmap(this.name, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /** clear | enable | disable a consistent bitmap. */
  changeBitmap(name: string, action: 'clear' | 'enable' | 'disable'): DirtyBitmap {
    const bitmap = this.bitmaps.get(name);
    bitmap.assertConsistent(action === 'clear' ? 'clear it' : `${action} it`);
    if (action === 'clear') bitmap.clearAll();
    else bitmap.enabled = action === 'enable';
    return bitmap;
  }

  /** ORs the source bitmaps into the target. */
  mergeBitmaps(target: string, sources: readonly string[]): DirtyBitmap {
    const into = this.bitmaps.get(target);
    into.assertConsistent('merge into it');
    const from = sources.map((s) => this.bitmaps.get(s));
    for (const b of from) b.assertConsistent('merge it');
    for (const b of from) into.merge(b);
    return into;
  }

  async createSnapshot(request: SnapshotRequest): Promise<LiveSnapshot> {
    checkName('snapshot', request.name);
    if (this.#snapshots.has(request.name)) throw new DaemonError('ESNAPSHOT_EXISTS', `disk '${this.name}' already has a snapshot '${request.name}'`);
    const bitmap = request.bitmap === undefined ? undefined : this.bitmaps.get(request.bitmap);
    bitmap?.assertConsistent(`create snapshot '${request.name}' from it`);
    let frozen: DirtyBitmap[] = [];
    const since = new DirtyBitmap('since', this.size);
    const snapshot = await this.#cbw.createSnapshot(
      { name: request.name, bitmap, ramBytes: request.ramBytes, spillDir: request.spillDir, spillMaxBytes: request.spillMaxBytes, onFull: request.onFull },
      () => {
        // At the point in time: freeze the bitmaps for the snapshot export, start "since".
        frozen = this.bitmaps.list().filter((b) => !b.inconsistent).map((b) => b.clone(b.name, { enabled: false }));
        this.bitmaps.track(since);
      },
    );
    const live: LiveSnapshot = { access: new SnapshotAccessDevice(snapshot, this.#cbw, { readOnce: request.readOnce }), frozenBitmaps: frozen, since };
    this.#snapshots.set(request.name, live);
    return live;
  }

  /**
   * Ends copy-before-write; with keepBitmap, what was written since becomes (or replaces) that
   * bitmap, at `granularity` if given (coarser granules cover whole backup chunks).
   */
  async releaseSnapshot(name: string, options: { keepBitmap?: string; granularity?: number } = {}): Promise<DirtyBitmap | undefined> {
    const live = this.snapshot(name);
    // Built (and its granularity checked) before anything is released.
    const regranulated = options.keepBitmap === undefined || options.granularity === undefined ? undefined : new DirtyBitmap(options.keepBitmap, this.size, { granularity: options.granularity });
    this.#snapshots.delete(name);
    await this.#cbw.releaseSnapshot(name);
    await live.access.close();
    this.bitmaps.untrack(live.since);
    if (options.keepBitmap === undefined) return undefined;
    // An existing bitmap of that name is replaced: `--bitmap daily` then `--keep-bitmap daily`
    // moves the checkpoint to the snapshot's point in time.
    if (this.bitmaps.has(options.keepBitmap)) this.bitmaps.remove(options.keepBitmap);
    regranulated?.merge(live.since);
    const kept = this.bitmaps.add(regranulated ?? live.since.clone(options.keepBitmap, { enabled: true }));
    await saveBitmap(this.#state.bitmap(this.name, kept.name), kept, { inUse: true });
    return kept;
  }

  /** Releases snapshots, saves bitmaps clean, closes the image. */
  async close(): Promise<void> {
    for (const name of [...this.#snapshots.keys()]) await this.releaseSnapshot(name);
    await this.#cbw.flush().catch(() => {});
    await this.#cbw.close();
    for (const bitmap of this.bitmaps.list()) {
      await saveBitmap(this.#state.bitmap(this.name, bitmap.name), bitmap, { inUse: false });
    }
  }
}
