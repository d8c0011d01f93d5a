#!/usr/bin/env node
// Entry point of the `fleece` command: builds the command tree, runs it, and turns any error
// into one clear line on stderr and an exit status (never a stack trace unless FLEECE_DEBUG).

import { spawn } from 'node:child_process';
import type { Command } from 'commander';

/**
 * libuv threads for `fleece serve`: page-cache misses wait in the pool, so its size is how many
 * disk reads a server has in flight (qemu-nbd runs up to 64 threads). Node reads
 * UV_THREADPOOL_SIZE once, at the pool's first use, which loading this very module already is:
 * so serve re-runs itself with it set (unless the user set it), keeping this parent process light
 * (nothing else imported yet) and forwarding signals and the exit status.
 */
const SERVE_POOL_THREADS = '16';
const CHILD_MARK = 'FLEECE_POOL_CHILD';

export async function buildProgram(): Promise<Command> {
  const { Command: CommandClass } = await import('commander');
  const { commands } = await import('./commands/index.js');
  const program = new CommandClass('fleece')
    .description('Back up live virtual-machine disks: NBD exports, dirty-block tracking, snapshots, a deduplicated repository.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const { CommanderError } = await import('commander');
  const { describeError } = await import('../core/errors.js');
  const { EXIT_USAGE, exitCodeFor } = await import('./exit-codes.js');
  const program = await buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed help, the version, or the usage error.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    process.stderr.write(`fleece: ${describeError(err)}\n`);
    if (process.env.FLEECE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = exitCodeFor(err);
  }
}

/** Runs this command again with a bigger thread pool; resolves when that child has exited. */
function rerunWithPool(threads: string): Promise<void> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, UV_THREADPOOL_SIZE: threads, [CHILD_MARK]: '1' },
    // Own process group: a terminal's Ctrl-C reaches this parent only, which forwards it once.
    detached: true,
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
  for (const signal of signals) process.on(signal, forward);
  return new Promise((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`fleece: cannot start the server process: ${err.message}\n`);
      process.exitCode = 1;
    });
    child.once('close', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      if (signal) process.kill(process.pid, signal);
      else process.exitCode = code ?? 1;
      resolve();
    });
  });
}

if (process.argv[2] === 'serve' && process.env.UV_THREADPOOL_SIZE === undefined) {
  await rerunWithPool(SERVE_POOL_THREADS);
} else {
  // Started by rerunWithPool: end (like on SIGTERM) if that parent dies without forwarding it.
  if (process.env[CHILD_MARK] && process.channel) {
    delete process.env[CHILD_MARK];
    process.channel.unref();
    process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  }
  await main(process.argv);
}
