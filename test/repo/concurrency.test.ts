// Concurrency: two processes backing up (often the same content a deleted backup had) while a
// third deletes backups and runs gc, for a bounded time. Afterwards every backup restores
// identical and check is clean.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../helpers/tools.js';
import { fleece, makeImage, restoreAll, sha256File } from './helpers.js';

const DURATION_MS = Number(process.env.FLEECE_TEST_RACE_MS ?? 20_000);

interface Listed { id: string; disk: string }

test('backups racing delete and gc: every backup restores, check clean', { timeout: DURATION_MS + 180_000 }, async () => {
  const dir = await scratchDir();
  try {
    const repo = join(dir.path, 'repo');
    assert.equal((await fleece(repo, ['init', '--chunk-size', '16K', '--pack-size', '512K'])).code, 0);
    const versions: string[] = [];
    const shas: string[] = [];
    for (let v = 0; v < 4; v++) {
      const path = join(dir.path, `v${v}.img`);
      await makeImage(path, v === 3 ? 'sparse' : 'random', 2 * 1024 * 1024);
      versions.push(path);
      shas.push(await sha256File(path));
    }
    const deadline = Date.now() + DURATION_MS;
    const failures: string[] = [];
    let backups = 0;
    let gcs = 0;
    const backupLoop = async (): Promise<void> => {
      while (Date.now() < deadline) {
        const v = Math.floor(Math.random() * versions.length);
        const r = await fleece(repo, ['backup', versions[v]!, '--disk', 'vm', '--tag', `v${v}`, '--json']);
        if (r.code !== 0) failures.push(`backup: ${r.stderr}`);
        else backups++;
      }
    };
    const gcLoop = async (): Promise<void> => {
      while (Date.now() < deadline) {
        const list = await fleece(repo, ['list', '--json']);
        const all = JSON.parse(list.stdout) as Listed[];
        if (all.length > 2) {
          const victim = all[Math.floor(Math.random() * (all.length - 1))]!;
          const d = await fleece(repo, ['delete', victim.id]);
          if (d.code !== 0 && !/no backup/.test(d.stderr)) failures.push(`delete: ${d.stderr}`);
        }
        const g = await fleece(repo, ['gc', '--json']);
        if (g.code !== 0 && !/another gc/.test(g.stderr)) failures.push(`gc: ${g.stderr}`);
        else gcs++;
      }
    };
    await Promise.all([backupLoop(), backupLoop(), gcLoop()]);
    assert.deepEqual(failures, []);
    assert.ok(backups >= 4 && gcs >= 2, `ran ${backups} backups and ${gcs} gcs`);

    const check = await fleece(repo, ['repo', 'check', '--json']);
    assert.equal(check.code, 0, check.stdout);
    assert.deepEqual((JSON.parse(check.stdout) as { errors: string[] }).errors, []);
    const restored = await restoreAll(repo, dir.path);
    assert.ok(restored.size > 0);
    for (const [id, { sha, tags }] of restored) assert.equal(sha, shas[Number(tags[0]!.slice(1))], `backup ${id} (${tags[0]}) restores identical`);
    assert.equal((await fleece(repo, ['verify'])).code, 0);
  } finally {
    await dir.cleanup();
  }
});
