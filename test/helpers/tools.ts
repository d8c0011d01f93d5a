// Test helpers shared by every layer: real external tools (a missing one fails the test, it is
// never skipped), scratch directories, and running a command for its output.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Asserts every tool is on PATH; the message names the Debian package to install. */
export function requireTools(...names: string[]): void {
  const packages: Record<string, string> = {
    'qemu-img': 'qemu-utils', 'qemu-io': 'qemu-utils', 'qemu-nbd': 'qemu-utils',
    'qemu-storage-daemon': 'qemu-system-common', nbdinfo: 'libnbd-bin', nbdcopy: 'libnbd-bin',
    nbdkit: 'nbdkit', fio: 'fio', restic: 'restic', borg: 'borgbackup',
  };
  for (const name of names) {
    const found = spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
    if (!found) throw new Error(`required tool '${name}' is not installed (Debian package ${packages[name] ?? name}; run scripts/setup.sh)`);
  }
}

/** nbdsh must run under Debian's python, the only one that can import python3-libnbd. */
export const NBDSH = ['/usr/bin/python3', '-m', 'nbd'];

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** Runs a command to completion; never throws on a non-zero status (callers assert on `code`). */
export function run(cmd: string, args: string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { maxBuffer: 256 * 1024 * 1024, timeout: options.timeoutMs ?? 120_000, env: options.env ?? process.env },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') return reject(err);
        resolve({ stdout, stderr, code: err ? ((err as { code?: number }).code ?? 1) : 0 });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Runs a command and returns stdout, throwing with stderr if it fails. */
export async function runOk(cmd: string, args: string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const result = await run(cmd, args, options);
  if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** A fresh scratch directory, removed by the returned cleanup function. */
export async function scratchDir(prefix = 'fleece-test-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}
