// Where the daemon keeps its state: one folder per disk holding the sparse raw image, its
// metadata and its bitmap side files, plus the NBD and API sockets and the pid file.

import { join } from 'node:path';
import { UsageError } from '../core/errors.js';

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Disk and snapshot names: they become file names and NBD export names (DISK@SNAP). */
export function checkName(kind: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new UsageError(`invalid ${kind} name '${name}': expected 1-128 of A-Z a-z 0-9 . _ - not starting with . _ -`);
  }
}

export class StateDir {
  constructor(readonly root: string) {}

  get nbdSocket(): string {
    return join(this.root, 'nbd.sock');
  }

  get apiSocket(): string {
    return join(this.root, 'api.sock');
  }

  get pidFile(): string {
    return join(this.root, 'daemon.pid');
  }

  get disksDir(): string {
    return join(this.root, 'disks');
  }

  diskDir(disk: string): string {
    return join(this.disksDir, disk);
  }

  image(disk: string): string {
    return join(this.diskDir(disk), 'disk.img');
  }

  meta(disk: string): string {
    return join(this.diskDir(disk), 'disk.json');
  }

  bitmapsDir(disk: string): string {
    return join(this.diskDir(disk), 'bitmaps');
  }

  bitmap(disk: string, bitmap: string): string {
    return join(this.bitmapsDir(disk), `${bitmap}.bitmap`);
  }
}
