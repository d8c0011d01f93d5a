// Restoring into an image file so that a failure leaves nothing half-done behind: the image is
// written under a temporary name beside the target and renamed over it only once complete (and
// synced, unless told not to). An interrupted or failed restore removes its temporary file, and
// a file already at the target keeps its contents, mode and owner until the new image replaces it.
// Targets that are not regular files (block devices) are written in place: they cannot be renamed.

import { chmod, chown, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { syncDir } from '../core/sync-dir.js';
import type { Manifest } from './manifest.js';
import type { Repository } from './repository.js';
import { runRestore, type RestoreOptions } from './restore-engine.js';

/** Prefix of the temporary file a restore writes beside its target (see restoreImageFile). */
export const RESTORE_TEMP_PREFIX = '.fleece-restore-';

export async function restoreImageFile(repo: Repository, manifest: Manifest, target: string, options: RestoreOptions = {}): Promise<void> {
  const existing = await stat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (existing && !existing.isFile()) return runRestore(repo, manifest, target, options);
  // Through a symlink, the file it points to is the one replaced.
  const path = existing ? await realpath(target) : target;
  const temp = join(dirname(path), `${RESTORE_TEMP_PREFIX}${process.pid}-${basename(path)}`);
  // A file already there was safe: its replacement is synced before the rename even when asked
  // not to sync, or a crash could leave the new name on unwritten blocks.
  const sync = existing ? true : (options.sync ?? true);
  try {
    // Owner-only while it is written when it replaces a file (which may be private); a new
    // file gets the usual mode, as the restore would give it anyway.
    await (await open(temp, 'w', existing ? 0o600 : 0o666)).close();
    await runRestore(repo, manifest, temp, { ...options, sync });
    if (existing) {
      await chmod(temp, existing.mode & 0o7777);
      // Only root may give a file away; anyone else keeps their own ownership.
      if (process.getuid?.() === 0) await chown(temp, existing.uid, existing.gid);
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  // The new name is durable only once the directory is: the image itself was synced before.
  if (sync) await syncDir(dirname(path));
}
