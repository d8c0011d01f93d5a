// The record of a live restore in progress, DISK/restore/restore.json (mode 0600: it may hold
// the repository passphrase). Its presence is what makes a disk "restoring" at daemon start;
// it is written before the disk's disk.json and removed only once the whole image is durable.

import { open, readFile, rename, unlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../core/errors.js';
import { syncDir } from '../core/sync-dir.js';
import type { StateDir } from './state-dir.js';

/** What the API request and the record carry: where the backup is and how to unlock it. */
export interface LiveRestoreRequest {
  readonly name: string;
  /** Repository location (absolute directory or s3://…), as the daemon sees it. */
  readonly repo: string;
  /** Backup id or unique prefix. */
  readonly backup: string;
  /** Path of a key file the daemon can read. */
  readonly keyFile?: string;
  /** Repository passphrase (kept in the 0600 record until the restore ends). */
  readonly passphrase?: string;
  /** Background copy rate cap in bytes of disk per second. */
  readonly rateLimit?: number;
}

export interface LiveRestoreRecord extends Omit<LiveRestoreRequest, 'name' | 'backup'> {
  /** Full backup id. */
  readonly backup: string;
  readonly startedAt: string;
}

export function restorePaths(state: StateDir, disk: string): { dir: string; record: string; map: string } {
  const dir = join(state.diskDir(disk), 'restore');
  return { dir, record: join(dir, 'restore.json'), map: join(dir, 'fill.map') };
}

/** Validates an API body. */
export function parseLiveRestoreRequest(body: unknown): LiveRestoreRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  const field = (key: string, required: boolean): string | undefined => {
    const v = b[key];
    if (v === undefined || v === null) {
      if (required) throw new UsageError(`field '${key}' is required`);
      return undefined;
    }
    if (typeof v !== 'string' || v === '') throw new UsageError(`field '${key}' must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  };
  const rate = b.rateLimit;
  if (rate !== undefined && rate !== null && !(typeof rate === 'number' && Number.isSafeInteger(rate) && rate > 0)) {
    throw new UsageError(`field 'rateLimit' must be a positive number of bytes per second, got ${JSON.stringify(rate)}`);
  }
  const request = {
    name: field('name', true)!,
    repo: field('repo', true)!,
    backup: field('backup', true)!,
    keyFile: field('keyFile', false),
    passphrase: field('passphrase', false),
    ...(typeof rate === 'number' ? { rateLimit: rate } : {}),
  };
  if (request.keyFile !== undefined && request.passphrase !== undefined) throw new UsageError("give 'keyFile' or 'passphrase', not both");
  return request;
}

export async function writeRecord(state: StateDir, disk: string, record: LiveRestoreRecord): Promise<void> {
  const paths = restorePaths(state, disk);
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const temp = `${paths.record}.tmp`;
  const file = await open(temp, 'w', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(record, null, 2)}\n`);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temp, paths.record);
  await syncDir(paths.dir);
}

/** The record, or undefined when the disk is not being restored. */
export async function readRecord(state: StateDir, disk: string): Promise<LiveRestoreRecord | undefined> {
  try {
    return JSON.parse(await readFile(restorePaths(state, disk).record, 'utf8')) as LiveRestoreRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Ends the restore durably: from here on the disk opens as a plain disk. */
export async function removeRecord(state: StateDir, disk: string): Promise<void> {
  const paths = restorePaths(state, disk);
  await unlink(paths.record);
  await syncDir(paths.dir);
}
