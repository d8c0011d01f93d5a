// Restoring into an image file so that a failure leaves nothing half-done behind: the image is
// written under a temporary name beside the target and renamed over it only once complete (and
// synced, unless told not to). An interrupted or failed restore removes its temporary file, and
// a file already at the target keeps its contents, mode and owner until the new image replaces it.
// Targets that are not regular files (block devices) are written in place: they cannot be renamed.
// A restore killed outright (kill -9, a crash) cannot remove its temporary file: the next restore
// to the same target removes it, once its process is gone and it has not changed for an hour.

import { chmod, chown, open, readdir, realpath, rename, stat, unlink } from 'node:fs/promises';
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
  await sweepStaleTemps(dirname(path), basename(path));
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

/** Left alone: a temporary file this recent may belong to a restore on another host (a shared directory). */
const STALE_AFTER_MS = 60 * 60 * 1000;

/**
 * Removes the temporary files of earlier restores to `name` in `dir` whose process no longer
 * runs on this host and which have not changed for STALE_AFTER_MS. Best effort: a file it cannot
 * judge or remove stays.
 */
async function sweepStaleTemps(dir: string, name: string): Promise<void> {
  const suffix = `-${name}`;
  const entries = await readdir(dir).catch(() => [] as string[]);
  for (const entry of entries) {
    if (!entry.startsWith(RESTORE_TEMP_PREFIX) || !entry.endsWith(suffix)) continue;
    const digits = entry.slice(RESTORE_TEMP_PREFIX.length, entry.length - suffix.length);
    const pid = /^\d+$/.test(digits) ? Number(digits) : 0;
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || processRuns(pid)) continue;
    const path = join(dir, entry);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile() || Date.now() - st.mtimeMs < STALE_AFTER_MS) continue;
    await unlink(path).catch(() => undefined);
  }
}

/** Whether a process with this pid exists on this host (EPERM: it does, owned by someone else). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
