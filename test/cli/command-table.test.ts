// The CLI loads only the module of the verb a command line names: its table of verbs must match
// what each module registers, or a verb would be missing from the command line that names it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { ALL_VERBS, loadCommands } from '../../src/cli/commands/index.js';

async function verbsRegistered(args: string[]): Promise<string[]> {
  const program = new Command('fleece');
  for (const register of await loadCommands(args)) register(program);
  return program.commands.map((c) => c.name());
}

test('without a known verb every module loads, in the table order', async () => {
  for (const args of [[], ['--help'], ['no-such-verb']]) assert.deepEqual(await verbsRegistered(args), ALL_VERBS, `args ${args.join(' ')}`);
});

test('a command line naming a verb loads the module that registers it, and only that one', async () => {
  for (const verb of ALL_VERBS) {
    const registered = await verbsRegistered(['--json', verb, 'x']);
    assert.ok(registered.includes(verb), `${verb} registered: ${registered.join(', ')}`);
    assert.ok(registered.length < ALL_VERBS.length, `${verb} loads only its module: ${registered.join(', ')}`);
  }
});
