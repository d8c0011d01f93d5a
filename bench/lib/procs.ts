// Starting and stopping the servers a benchmark measures, and running fio for its JSON.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Server {
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Spawns a server and resolves once its Unix socket accepts connections. */
export async function startServer(cmd: string, args: string[], socketPath: string, env: NodeJS.ProcessEnv = process.env): Promise<Server> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 15_000;
  while (!(await canConnect(socketPath))) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited ${child.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${cmd} did not listen on ${socketPath} within 15 s: ${stderr.trim()}`);
    }
    await sleep(50);
  }
  return {
    child,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface FioResult {
  readonly iops: number;
  readonly bytesPerSecond: number;
  readonly p99LatencyUs: number;
}

/** Runs one fio job (args without --output-format) and returns the read or write side. */
export function runFio(args: string[], side: 'read' | 'write'): FioResult {
  const result = spawnSync('fio', [...args, '--output-format=json'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`fio ${args.join(' ')} failed: ${result.stderr}`);
  const json = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as {
    jobs: Record<'read' | 'write', { iops: number; bw_bytes: number; clat_ns?: { percentile?: Record<string, number> } }>[];
  };
  const job = json.jobs[0]![side];
  return {
    iops: job.iops,
    bytesPerSecond: job.bw_bytes,
    p99LatencyUs: (job.clat_ns?.percentile?.['99.000000'] ?? 0) / 1000,
  };
}

/** Flushes dirty pages everywhere (the `sync` before each run). */
export function syncAll(): void {
  spawnSync('sync');
}

/** Drops a file's pages from the page cache (posix_fadvise DONTNEED), for cold-cache runs. */
export function dropFileCache(path: string): void {
  const code = 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.fdatasync(fd)\nos.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)\nos.close(fd)';
  const result = spawnSync('/usr/bin/python3', ['-c', code, path], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`dropping the page cache of ${path} failed: ${result.stderr}`);
}
