// The few daemon API calls a disk backup makes (list, snapshot, release, remove bitmap), typed,
// with errors that name the state directory so "is the daemon running?" is answered at once.

import { dirname, join } from 'node:path';
import { FleeceError } from '../../core/errors.js';
import type { DiskBitmapInfo } from './disk-plan.js';

export interface DaemonDiskInfo {
  readonly name: string;
  readonly size: number;
  readonly bitmaps: readonly DiskBitmapInfo[];
  readonly snapshots: readonly string[];
}

/** The daemon's control API as jobs see it (the CLI hands in its ApiClient). */
export interface DaemonApi {
  /** The API's Unix socket, inside the daemon's state directory. */
  readonly socketPath: string;
  /** One JSON request; rejects with the daemon's error. */
  call<T>(method: string, path: string, body?: unknown, options?: { signal?: AbortSignal }): Promise<T>;
}

export class DiskDaemon {
  readonly stateDir: string;
  readonly #api: DaemonApi;

  constructor(api: DaemonApi) {
    this.stateDir = dirname(api.socketPath);
    this.#api = api;
  }

  /** Unix socket of the daemon's NBD server. */
  get nbdSocket(): string {
    return join(this.stateDir, 'nbd.sock');
  }

  /** One disk's size, bitmaps and snapshots; EDISK_NOT_FOUND names the disks there are. */
  async disk(name: string, options: { signal?: AbortSignal } = {}): Promise<DaemonDiskInfo> {
    const { disks } = await this.#api.call<{ disks: DaemonDiskInfo[] }>('GET', '/disks', undefined, options);
    const disk = disks.find((d) => d.name === name);
    if (!disk) {
      const known = disks.map((d) => `'${d.name}'`).join(', ') || 'none';
      throw new FleeceError('EDISK_NOT_FOUND', `the daemon of '${this.stateDir}' has no disk '${name}' (disks: ${known})`);
    }
    return disk;
  }

  /** Takes a snapshot (protecting only `bitmap`'s dirty clusters if given); returns its point in time. */
  async createSnapshot(disk: string, name: string, bitmap: string | undefined, options: { signal?: AbortSignal } = {}): Promise<{ export: string; createdAt: Date }> {
    const reply = await this.#api.call<{ export: string; createdAt?: string }>('POST', `/disks/${encodeURIComponent(disk)}/snapshots`, { name, bitmap }, options);
    return { export: reply.export, createdAt: reply.createdAt ? new Date(reply.createdAt) : new Date() };
  }

  /** Ends a snapshot; with keepBitmap, what was written since its point in time becomes that bitmap. */
  async releaseSnapshot(disk: string, name: string, keep?: { bitmap: string; granularity: number }): Promise<void> {
    await this.#api.call('POST', `/disks/${encodeURIComponent(disk)}/snapshots/${encodeURIComponent(name)}/release`, keep ? { keepBitmap: keep.bitmap, keepGranularity: keep.granularity } : {});
  }

  async removeBitmap(disk: string, name: string): Promise<void> {
    await this.#api.call('DELETE', `/disks/${encodeURIComponent(disk)}/bitmaps/${encodeURIComponent(name)}`);
  }
}
