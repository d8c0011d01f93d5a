// Shared by the disk: backup tests: a real daemon with one disk and a repository next to it,
// seeded random writes through qemu-io, the disk's sha256 pulled with nbdcopy, and
// `fleece backup disk:NAME --json` / `fleece restore` run as child processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runOk, type RunResult } from '../helpers/tools.js';
import { CLI, startDaemon, type DaemonHandle } from '../live/daemon-harness.js';

export const K = 1024;
export const M = K * K;
export const DISK = 'vm';
/** Bitmap granularity the backups keep (64 KiB chunks, 64 KiB snapshot clusters). */
export const GRANULE = 64 * K;

export interface Write {
  readonly offset: number;
  readonly length: number;
  readonly pattern: number;
}

export interface Rig {
  readonly dir: string;
  readonly repo: string;
  daemon: DaemonHandle;
  /** Restarts the daemon on the same state directory (after a kill -9). */
  restart(): Promise<void>;
}

export async function startRig(dir: string, size: number): Promise<Rig> {
  const state = join(dir, 'state');
  const repo = join(dir, 'repo');
  const rig: Rig = {
    dir,
    repo,
    daemon: await startDaemon(state),
    restart: async () => {
      rig.daemon = await startDaemon(state);
    },
  };
  try {
    await rig.daemon.cli('disk', 'create', DISK, '--size', String(size));
    await runOk(process.execPath, [CLI, 'init', '--repo', repo]);
  } catch (err) {
    await rig.daemon.stop();
    throw err;
  }
  return rig;
}

/** A deterministic generator (mulberry32), so a failure replays. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `count` writes of 4 KiB .. 128 KiB at 4 KiB-aligned random offsets inside [from, to). */
export function randomWrites(rand: () => number, count: number, from: number, to: number): Write[] {
  const out: Write[] = [];
  for (let i = 0; i < count; i++) {
    const length = (1 + Math.floor(rand() * 32)) * 4 * K;
    const offset = from + Math.floor((rand() * (to - from - length)) / (4 * K)) * 4 * K;
    out.push({ offset, length, pattern: 1 + Math.floor(rand() * 254) });
  }
  return out;
}

/** qemu-io arguments for a batch of writes against an export. */
function qemuIoArgs(uri: string, writes: readonly Write[]): string[] {
  return ['-f', 'raw', ...writes.flatMap((w) => ['-c', `write -P ${w.pattern} ${w.offset} ${w.length}`]), uri];
}

/** Writes through the disk's NBD export with qemu-io (one connection, in order). */
export async function writeDisk(rig: Rig, writes: readonly Write[]): Promise<void> {
  const out = await runOk('qemu-io', qemuIoArgs(rig.daemon.uri(DISK), writes));
  if (/failed|error/i.test(out)) throw new Error(`qemu-io: ${out}`);
}

/** Starts the writes in a child process (for kill -9 of the daemon mid-write). */
export function startWriter(rig: Rig, writes: readonly Write[]): ChildProcess {
  const child = spawn('qemu-io', qemuIoArgs(rig.daemon.uri(DISK), writes), { stdio: 'ignore' });
  child.on('error', () => undefined);
  return child;
}

/** Bytes a 64 KiB bitmap marks for these writes (whole granules, overlaps counted once). */
export function dirtyBytes(...batches: (readonly Write[])[]): number {
  const granules = new Set<number>();
  for (const w of batches.flat()) {
    for (let g = Math.floor(w.offset / GRANULE); g <= Math.floor((w.offset + w.length - 1) / GRANULE); g++) granules.add(g);
  }
  return granules.size * GRANULE;
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** sha256 of the disk's current content, pulled over NBD with nbdcopy. */
export async function diskSha(rig: Rig, exportName = DISK): Promise<string> {
  const file = join(rig.dir, 'pulled.raw');
  await runOk('nbdcopy', [rig.daemon.uri(exportName), file]);
  try {
    return await sha256File(file);
  } finally {
    await rm(file, { force: true });
  }
}

export interface BackupResult {
  readonly manifest: { id: string; parent: string | null; checkpoint: string | null; bytesRead: number; counts: Record<string, number> };
  readonly stderr: string;
  /** Bytes the job planned to read (the progress total: dirty bytes for an incremental). */
  readonly total: number;
}

/** The argv of `fleece backup disk:vm --json` against the rig. */
export function backupArgs(rig: Rig, ...extra: string[]): string[] {
  return [CLI, 'backup', `disk:${DISK}`, '--repo', rig.repo, '--state', rig.daemon.state, '--json', ...extra];
}

export async function backup(rig: Rig, ...extra: string[]): Promise<BackupResult> {
  const result = await run(process.execPath, backupArgs(rig, ...extra));
  if (result.code !== 0) throw new Error(`fleece backup exited ${result.code}: ${result.stderr}`);
  return parseBackup(result);
}

export function parseBackup(result: RunResult): BackupResult {
  const events = result.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event: string; total: number });
  const total = events.filter((e) => e.event === 'progress').at(-1)?.total ?? -1;
  return { manifest: JSON.parse(result.stdout) as BackupResult['manifest'], stderr: result.stderr, total };
}

/** Restores a backup to a file and returns the file's sha256. */
export async function restoreSha(rig: Rig, id: string): Promise<string> {
  const file = join(rig.dir, `restore-${id}.raw`);
  await runOk(process.execPath, [CLI, 'restore', id, file, '--repo', rig.repo, '--no-sync']);
  try {
    return await sha256File(file);
  } finally {
    await rm(file, { force: true });
  }
}

export function fleeceRepo(rig: Rig, ...args: string[]): Promise<string> {
  return runOk(process.execPath, [CLI, ...args, '--repo', rig.repo]);
}

/** Names of the live snapshots of the disk. */
export async function snapshots(rig: Rig): Promise<string[]> {
  const { snapshots: list } = await rig.daemon.api<{ snapshots: { disk: string; export: string }[] }>('/snapshots');
  return list.filter((s) => s.disk === DISK).map((s) => s.export.slice(DISK.length + 1));
}

export async function bitmapNames(rig: Rig): Promise<{ name: string; inconsistent: boolean }[]> {
  const { bitmaps } = await rig.daemon.api<{ bitmaps: { name: string; inconsistent: boolean }[] }>(`/disks/${DISK}/bitmaps`);
  return bitmaps;
}

/** Polls until the backup job's snapshot exists; returns its name. */
export async function waitForBackupSnapshot(rig: Rig, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snap = (await snapshots(rig)).find((s) => s.startsWith('fleece-backup-'));
    if (snap) return snap;
    if (Date.now() > deadline) throw new Error('the backup job never created its snapshot');
    await sleep(20);
  }
}
