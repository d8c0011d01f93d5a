// Temporary files of restores killed outright (kill -9): the next restore to the same target
// removes those whose process is gone and which have not changed for an hour, and leaves alone a
// live restore's, a recent one's (it may be another host's, in a shared directory) and other
// targets'.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../helpers/tools.js';
import { fleece, makeImage, sha256File } from './helpers.js';

test('a restore removes stale temporary files of dead restores to the same target, and only those', async () => {
  const dir = await scratchDir();
  try {
    const repoDir = join(dir.path, 'repo');
    const image = join(dir.path, 'disk.img');
    assert.equal((await fleece(repoDir, ['init'])).code, 0);
    await makeImage(image, 'compressible', 2 * 1024 * 1024);
    const backup = await fleece(repoDir, ['backup', image, '--disk', 'd', '--json']);
    assert.equal(backup.code, 0, backup.stderr);
    const id = (JSON.parse(backup.stdout) as { id: string }).id;

    // A pid that no longer runs: a child that has exited.
    const deadPid = spawnSync('true').pid!;
    const hoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    const temps = {
      stale: `.fleece-restore-${deadPid}-out.img`,
      recent: `.fleece-restore-${deadPid + 1_000_000}-out.img`,
      live: `.fleece-restore-${process.pid}-out.img`,
      other: `.fleece-restore-${deadPid}-other.img`,
    };
    for (const [kind, name] of Object.entries(temps)) {
      await writeFile(join(dir.path, name), 'partial image');
      if (kind !== 'recent') await utimes(join(dir.path, name), hoursAgo, hoursAgo);
    }

    const restored = await fleece(repoDir, ['restore', id, join(dir.path, 'out.img')]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal(await sha256File(join(dir.path, 'out.img')), await sha256File(image));
    const left = (await readdir(dir.path)).filter((n) => n.startsWith('.fleece-restore-')).sort();
    assert.deepEqual(left, [temps.live, temps.other, temps.recent].sort());
  } finally {
    await dir.cleanup();
  }
});
