// Publishes disks and their snapshots on the daemon's NBD server: `DISK` read-write with one
// `qemu:dirty-bitmap:NAME` context per consistent bitmap, `DISK@SNAP` read-only with the bitmaps
// frozen at the snapshot's point in time and `fleece:cache-location`.

import type { NbdExport, NbdServer } from '../nbd/index.js';
import { baseAllocation, type MetaContextProvider } from '../nbd/index.js';
import type { LiveDisk, LiveSnapshot } from './live-disk.js';
import { cacheLocationContext, dirtyBitmapContext } from './meta-contexts.js';

export function snapshotExportName(disk: string, snapshot: string): string {
  return `${disk}@${snapshot}`;
}

export class DiskExports {
  readonly #server: NbdServer;

  constructor(server: NbdServer) {
    this.#server = server;
  }

  /** Exports a disk; its bitmap contexts follow bitmaps added and removed later. */
  addDisk(disk: LiveDisk): void {
    const exp = this.#server.addExport({ name: disk.name, device: disk.device, description: `fleece disk ${disk.name}` });
    const base = baseAllocation(disk.device);
    // NbdExport keeps a fixed context list; the disk's bitmaps change at run time, so the
    // list is recomputed on each handshake that asks for it. Connections keep what they chose.
    Object.defineProperty(exp satisfies NbdExport, 'metaContexts', {
      configurable: true,
      enumerable: true,
      get: (): readonly MetaContextProvider[] => [
        base,
        ...disk.bitmaps.list().filter((b) => !b.inconsistent).map((b) => dirtyBitmapContext(b)),
      ],
    });
  }

  addSnapshot(disk: LiveDisk, name: string, snapshot: LiveSnapshot): void {
    this.#server.addExport({
      name: snapshotExportName(disk.name, name),
      device: snapshot.access,
      readOnly: true,
      description: `snapshot ${name} of fleece disk ${disk.name}`,
      metaContexts: [
        baseAllocation(snapshot.access),
        cacheLocationContext(snapshot.access),
        ...snapshot.frozenBitmaps.map((b) => dirtyBitmapContext(b)),
      ],
    });
  }

  async remove(name: string): Promise<void> {
    if (this.#server.resolve(name)?.name === name) await this.#server.removeExport(name);
  }
}
