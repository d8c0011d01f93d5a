// A real `fleece daemon` process on a scratch state directory for the live-disk acceptance
// tests, plus the CLI and NBD URIs to drive it with real clients.

import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runOk, scratchDir, type RunResult } from '../helpers/tools.js';

export const CLI = resolve('dist/src/cli/fleece.cjs');

export interface DaemonHandle {
  readonly state: string;
  readonly child: ChildProcess;
  /** nbd+unix URI of an export (DISK or DISK@SNAP). */
  uri(name: string): string;
  /** Runs `fleece ARGS --state DIR` and returns stdout, throwing on failure. */
  cli(...args: string[]): Promise<string>;
  /** Same, returning the status instead of throwing. */
  cliResult(...args: string[]): Promise<RunResult>;
  /** Parsed JSON of `fleece ARGS --json`. */
  json<T = unknown>(...args: string[]): Promise<T>;
  /** GET on the control API. */
  api<T = unknown>(path: string): Promise<T>;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

export async function withState<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await scratchDir('fleece-live-');
  try {
    return await fn(dir.path);
  } finally {
    await dir.cleanup();
  }
}

export async function startDaemon(state: string): Promise<DaemonHandle> {
  const child = spawn(process.execPath, [CLI, 'daemon', '--state', state], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const api = join(state, 'api.sock');
  const deadline = Date.now() + 15_000;
  while (!(await canConnect(api))) {
    if (child.exitCode !== null) throw new Error(`fleece daemon exited ${child.exitCode}: ${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`fleece daemon did not start: ${output}`);
    }
    await sleep(50);
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const handle: DaemonHandle = {
    state,
    child,
    uri: (name) => `nbd+unix:///${name}?socket=${join(state, 'nbd.sock')}`,
    cli: (...args) => runOk(process.execPath, [CLI, ...args, '--state', state]),
    cliResult: (...args) => run(process.execPath, [CLI, ...args, '--state', state]),
    json: async (...args) => JSON.parse(await runOk(process.execPath, [CLI, ...args, '--state', state, '--json'])),
    api: async (path) => JSON.parse(await runOk('curl', ['-sf', '--unix-socket', api, `http://fleece${path}`])),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
    kill9: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
  return handle;
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
