#!/usr/bin/env node
// Entry point of the `fleece` command: builds the command tree, runs it, and turns any error
// into one clear line on stderr and an exit status (never a stack trace unless FLEECE_DEBUG).

import type { Command } from 'commander';

/** The command tree for `args` (the arguments after the script): see loadCommands. */
export async function buildProgram(args: readonly string[] = []): Promise<Command> {
  const { Command: CommandClass } = await import('commander');
  const { loadCommands } = await import('./commands/index.js');
  const commands = await loadCommands(args);
  const program = new CommandClass('fleece')
    .description('Back up live virtual-machine disks: NBD exports, dirty-block tracking, snapshots, a deduplicated repository.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  // A reader that stops early (`fleece list --json | head`) closes the pipe: end quietly, as a
  // program killed by SIGPIPE would, rather than with an unhandled EPIPE and its stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? 0);
    });
  }
  const { CommanderError } = await import('commander');
  const { describeError } = await import('../core/errors.js');
  const { EXIT_USAGE, exitCodeFor } = await import('./exit-codes.js');
  const program = await buildProgram(argv.slice(2));
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

await main(process.argv);
