// What `fleece backup` reads from: a source plus what it knows about changes. A source that
// tracks changes (a daemon disk's bitmap, a QEMU dirty bitmap) names the parent its changes are
// relative to; the job commits or aborts it so change tracking moves on only after success.

import type { BackupSource } from '../../repo/backup-source.js';
import type { Manifest } from '../../repo/manifest.js';
import type { Repository } from '../../repo/repository.js';
import type { ByteRange } from '../dirty-ranges.js';
import type { DaemonApi } from './disk-daemon.js';

export interface JobSource {
  /** What the backup engine reads. */
  readonly source: BackupSource;
  /** Ranges changed since `parent`; undefined means read everything. */
  readonly changed?: readonly ByteRange[];
  /** The backup `changed` is relative to (an id in the repository). */
  readonly parent?: string;
  /** Point in time the source shows (default: now). */
  readonly time?: Date;
  /** Opaque checkpoint stored in the manifest (e.g. the bitmap generation the next run starts from). */
  readonly checkpoint?: string;
  /** Lines worth telling the operator (e.g. "bitmap inconsistent: full backup"). */
  readonly notices: readonly string[];
  /** The backup committed: start tracking changes from its point in time. */
  commit(manifest: Manifest, options?: { signal?: AbortSignal }): Promise<void>;
  /** The backup failed or was cancelled: keep every change since the last success marked. */
  abort(): Promise<void>;
  /** Releases connections and handles; idempotent. */
  close(): Promise<void>;
}

export interface OpenJobSourceOptions {
  readonly repo: Repository;
  /** Disk name the backup is filed under. */
  readonly disk: string;
  /** Explicit parent backup id (prefix); otherwise the source picks one or none. */
  readonly parent?: string;
  /** Dirty bitmap to read changes from (`nbd://` sources). */
  readonly bitmap?: string;
  /** The daemon's API for `disk:NAME` sources. */
  readonly daemon?: DaemonApi;
  readonly signal?: AbortSignal;
}

/** Latest backup of `disk` in the repository, or the one `parent` names. */
export function pickParent(repo: Repository, disk: string, parent: string | undefined): Manifest | undefined {
  if (parent !== undefined) return repo.resolveBackup(parent);
  const backups = repo.catalog.backups(disk);
  return backups[backups.length - 1];
}
