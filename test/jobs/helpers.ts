// Shared by the jobs tests: qemu-nbd as a child process on a Unix socket, a size-narrowing
// device wrapper, and the fleece CLI runner.

import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import { BlockError, checkRange } from '../../src/block/errors.js';
import { run, type RunResult } from '../helpers/tools.js';

/** Waits until a Unix socket accepts connections. */
export async function waitForSocket(path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(path);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`socket '${path}' never came up`);
    await sleep(50);
  }
}

export interface Child {
  readonly process: ChildProcess;
  /** What the child wrote on stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts a long-running tool and returns a handle that kills exactly that process. */
export function startChild(cmd: string, args: string[]): Child {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout?.resume();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    process: child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      if (stderr && process.env.FLEECE_TEST_VERBOSE) process.stderr.write(stderr);
    },
  };
}

/** Starts `qemu-nbd -t -k SOCKET ...args` and waits for it to listen. */
export async function startQemuNbd(socket: string, args: string[]): Promise<Child> {
  const child = startChild('qemu-nbd', ['-t', '-k', socket, ...args]);
  try {
    await waitForSocket(socket);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return child;
}

/** Presents the first `size` bytes of a larger device (qemu-nbd rounds raw exports up to 512 bytes). */
export class SizeWindow implements BlockDevice {
  readonly size: number;
  readonly #inner: BlockDevice;
  #closed = false;

  constructor(inner: BlockDevice, size: number) {
    this.#inner = inner;
    this.size = size;
  }

  get capabilities(): BlockDevice['capabilities'] {
    return this.#inner.capabilities;
  }

  #check(offset: number, length: number, what: string): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `${what}: closed`);
    checkRange(this.size, offset, length, what);
  }

  async read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    this.#check(offset, target.length, 'read');
    return this.#inner.read(offset, target, options);
  }
  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.#check(offset, data.length, 'write');
    return this.#inner.write(offset, data, options);
  }
  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.#check(offset, length, 'write-zeroes');
    return this.#inner.writeZeroes(offset, length, options);
  }
  async discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    this.#check(offset, length, 'discard');
    return this.#inner.discard(offset, length, options);
  }
  async flush(options?: IoOptions): Promise<void> {
    this.#check(0, 0, 'flush');
    return this.#inner.flush(options);
  }
  async cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    this.#check(offset, length, 'cache');
    return this.#inner.cache(offset, length, options);
  }
  async blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    this.#check(offset, length, 'block-status');
    return this.#inner.blockStatus(offset, length, options);
  }
  async close(): Promise<void> {
    this.#closed = true;
    await this.#inner.close();
  }
}

/** Runs the built fleece CLI. */
export function fleece(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return run(process.execPath, ['dist/src/cli/fleece.cjs', ...args], { env: { ...process.env, ...env }, timeoutMs: 120_000 });
}
