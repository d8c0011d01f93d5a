// Output into a pipe whose reader has gone (`fleece --help | head -1`) ends the command quietly.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { FLEECE_MAIN } from '../repo/helpers.js';

test('a closed stdout pipe ends the command without an EPIPE stack trace', async () => {
  const child = spawn(process.execPath, [FLEECE_MAIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy(); // the reader is gone before the help is written
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(stderr, '', 'nothing on stderr');
  assert.equal(code, 0);
});
