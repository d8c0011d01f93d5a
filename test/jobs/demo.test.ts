// The README's main job (`npm run demo`) end to end: daemon, disk, full and incremental backups,
// both restored and compared with the disk as it was. The script itself runs `cmp`; this test
// also checks the incremental read far less than the full backup.

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireTools, run, scratchDir } from '../helpers/tools.js';

test('the demo runs the whole backup story and both restores are identical', { timeout: 180_000 }, async () => {
  requireTools('qemu-io', 'nbdcopy', 'cmp', 'sha256sum', 'awk');
  const dir = await scratchDir('fleece-demo-');
  try {
    const result = await run('bash', ['scripts/demo.sh'], { env: { ...process.env, FLEECE_DEMO_DIR: join(dir.path, 'demo') } });
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    const identical = result.stdout.match(/identical to the disk at backup time/g) ?? [];
    assert.equal(identical.length, 2, result.stdout);
    const full = /full backup \w+ in [\d.]+ s: read ([\d.]+) MiB/.exec(result.stdout);
    const incremental = /incremental backup \w+ in [\d.]+ s: read ([\d.]+) MiB/.exec(result.stdout);
    assert.ok(full && incremental, result.stdout);
    assert.ok(Number(full[1]) >= 96, `full backup read ${full[1]} MiB`);
    // 100 scattered 4 KiB writes dirty at most 100 clusters of 64 KiB.
    assert.ok(Number(incremental[1]) <= 6.3, `incremental read ${incremental[1]} MiB`);
    assert.deepEqual(await processesMentioning(join(dir.path, 'demo')), [], 'the demo left a process running');
  } finally {
    await dir.cleanup();
  }
});

/** Pids whose command line mentions `text` (the demo must stop the daemon it started). */
async function processesMentioning(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) found.push(Number(entry));
  }
  return found;
}
