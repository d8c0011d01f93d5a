// Publishes disks and their snapshots on the daemon's NBD server: `DISK` read-write with one
// `qemu:dirty-bitmap:NAME` context per consistent bitmap, `DISK@SNAP` read-only with the bitmaps
// frozen at the snapshot's point in time and `fleece:cache-location`.

import type { NbdServer } from '../nbd/index.js';
import { baseAllocation } from '../nbd/index.js';
import type { LiveDisk, LiveSnapshot } from './live-disk.js';
import { bitmapContexts, cacheLocationContext } from './meta-contexts.js';

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
    this.#server.addExport({
      name: disk.name,
      device: disk.device,
      description: `fleece disk ${disk.name}`,
      metaContexts: () => bitmapContexts(disk.bitmaps.list()),
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
        ...bitmapContexts(snapshot.frozenBitmaps),
      ],
    });
  }

  async remove(name: string): Promise<void> {
    if (this.#server.resolve(name)?.name === name) await this.#server.removeExport(name);
  }
}
