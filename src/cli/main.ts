#!/usr/bin/env node
// Entry point of the `fleece` command: builds the command tree, runs it, and turns any error
// into one clear line on stderr and an exit status (never a stack trace unless FLEECE_DEBUG).

import { Command, CommanderError } from 'commander';
import { describeError } from '../core/errors.js';
import { commands } from './commands/index.js';
import { EXIT_USAGE, exitCodeFor } from './exit-codes.js';

export function buildProgram(): Command {
  const program = new Command('fleece')
    .description('Back up live virtual-machine disks: NBD exports, dirty-block tracking, snapshots, a deduplicated repository.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
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
