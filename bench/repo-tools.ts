// The backup tools the repository benchmark compares, each driven through its own CLI as a child
// process under `/usr/bin/time -v` (wall time measured here, peak RSS from time's report).

import { spawnSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

export interface Measured {
  readonly seconds: number;
  /** Peak resident set size of the process tree's largest process (time -v), bytes. */
  readonly peakRss: number;
  readonly stdout: string;
}

/** Runs a command under /usr/bin/time -v; throws with its stderr on a non-zero exit. */
export function measure(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Measured {
  const started = performance.now();
  const result = spawnSync('/usr/bin/time', ['-v', cmd, ...args], { encoding: 'utf8', env: options.env, cwd: options.cwd, maxBuffer: 256 * 2 ** 20 });
  const seconds = (performance.now() - started) / 1000;
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${result.status}: ${result.stderr.slice(-2000)}`);
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(result.stderr);
  return { seconds, peakRss: rss ? Number(rss[1]) * 1024 : NaN, stdout: result.stdout };
}

/** Bytes a repository directory holds (`du -sb`), caches and fleece's derived catalog excluded. */
export function storedBytes(dir: string): number {
  const result = spawnSync('du', ['-sb', '--exclude=.catalog.sqlite*', dir], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`du ${dir} failed: ${result.stderr}`);
  return Number(result.stdout.split('\t')[0]);
}

export interface Tool {
  readonly name: string;
  /** The commands, for the report. */
  readonly commands: string;
  readonly repo: string;
  init(): void;
  backup(image: string, label: string): Measured;
  /** Restores the last backup of `label` into `dir` (created empty). */
  restore(label: string, dir: string): Measured;
}

const CLI = resolve('dist/src/cli/fleece.cjs');

export function fleeceTool(work: string, encrypted: boolean): Tool {
  const repo = join(work, encrypted ? 'fleece-enc' : 'fleece');
  const env = { ...process.env, FLEECE_REPO: repo, FLEECE_PASSWORD: 'bench-passphrase' };
  const ids = new Map<string, string>();
  const fleece = (args: string[], cwd?: string): Measured => measure(process.execPath, [CLI, ...args], { env, cwd });
  return {
    name: encrypted ? 'fleece (encrypted)' : 'fleece',
    commands: `\`fleece init${encrypted ? ' --encrypt' : ''}\` (64 KiB chunks, zstd 1${encrypted ? ', AES-256-GCM' : ''}); \`fleece backup IMG --disk vm --json\`; \`fleece restore ID OUT --no-sync\` (restic and borg do not fsync restored files either; without the flag fleece fsyncs the image at the end)`,
    repo,
    init: () => void fleece(['init', ...(encrypted ? ['--encrypt'] : [])]),
    backup: (image, label) => {
      const run = fleece(['backup', image, '--disk', label, '--json']);
      ids.set(label, (JSON.parse(run.stdout) as { id: string }).id);
      return run;
    },
    restore: (label, dir) => fleece(['restore', ids.get(label)!, join(dir, 'out.img'), '--no-sync']),
  };
}

export function resticTool(work: string): Tool {
  const repo = join(work, 'restic');
  const env = { ...process.env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench-passphrase', RESTIC_CACHE_DIR: join(work, 'restic-cache') };
  return {
    name: 'restic 0.14',
    commands: '`restic init` (repository v2, default `--compression auto`, mandatory AES-256 + Poly1305); `restic backup IMG --tag LABEL`; `restic restore latest --tag LABEL --target DIR` (defaults otherwise: its local cache under a fresh `RESTIC_CACHE_DIR`)',
    repo,
    init: () => void measure('restic', ['init', '--quiet'], { env }),
    backup: (image, label) => measure('restic', ['backup', '--quiet', '--tag', label, image], { env }),
    restore: (label, dir) => measure('restic', ['restore', 'latest', '--quiet', '--tag', label, '--target', dir], { env }),
  };
}

export function borgTool(work: string): Tool {
  const repo = join(work, 'borg');
  const env = {
    ...process.env,
    BORG_PASSPHRASE: 'bench-passphrase',
    BORG_BASE_DIR: join(work, 'borg-base'),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  let archives = 0;
  const last = new Map<string, string>();
  return {
    name: 'borg 1.2',
    commands: '`borg init --encryption=repokey-blake2`; `borg create REPO::NAME IMG` (default lz4, buzhash chunker); `borg extract REPO::NAME` in DIR',
    repo,
    init: () => void measure('borg', ['init', '--encryption=repokey-blake2', repo], { env }),
    backup: (image, label) => {
      const name = `${label}-${archives++}`;
      last.set(label, name);
      return measure('borg', ['create', `${repo}::${name}`, image], { env });
    },
    restore: (label, dir) => measure('borg', ['extract', `${repo}::${last.get(label)!}`], { env, cwd: dir }),
  };
}

/** A fresh empty directory for a restore. */
export async function freshDir(path: string): Promise<string> {
  await rm(path, { recursive: true, force: true });
  await mkdir(path, { recursive: true });
  return path;
}
