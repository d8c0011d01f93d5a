// Crashes: the CLI is killed with SIGKILL at random moments during backup, delete, prune and gc.
// Afterwards: check has no errors, every listed backup restores identical (its tag names the
// image version), and once dead leases expire gc reclaims every orphan.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { scratchDir } from '../helpers/tools.js';
import { FLEECE_MAIN, fleece, makeImage, restoreAll, sha256File } from './helpers.js';

const DURATION_MS = Number(process.env.FLEECE_TEST_CRASH_MS ?? 25_000);
const TTL_MS = 3000;

/** Runs the CLI and SIGKILLs it after `killAfterMs` unless it exits first; resolves the status. */
function runKilled(repo: string, args: string[], killAfterMs: number): Promise<{ code: number | null; killed: boolean; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FLEECE_MAIN, ...args], {
      env: { ...process.env, FLEECE_REPO: repo, FLEECE_LEASE_TTL_MS: String(TTL_MS) },
      stdio: 'ignore',
    });
    let killed = false;
    const timer = setTimeout(() => {
      killed = child.kill('SIGKILL');
    }, killAfterMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, killed, ms: Date.now() - started });
    });
  });
}

test('kill -9 during backup, delete, prune and gc leaves a consistent repository', { timeout: DURATION_MS + 180_000 }, async (t) => {
  const dir = await scratchDir();
  try {
    const repo = join(dir.path, 'repo');
    const env = { FLEECE_LEASE_TTL_MS: String(TTL_MS) };
    assert.equal((await fleece(repo, ['init', '--chunk-size', '16K', '--pack-size', '256K'], env)).code, 0);
    const shas: string[] = [];
    const versions: string[] = [];
    for (let v = 0; v < 3; v++) {
      const path = join(dir.path, `v${v}.img`);
      await makeImage(path, v === 2 ? 'compressible' : 'random', 3 * 1024 * 1024);
      versions.push(path);
      shas.push(await sha256File(path));
    }
    const deadline = Date.now() + DURATION_MS;
    let iterations = 0;
    let kills = 0;
    // How long each command takes to finish on this machine, learnt from the runs that were not
    // killed: kill delays are drawn from that span, so the kills land throughout a command's life
    // (start-up included) however fast or slow the machine is today.
    const typicalMs = new Map<string, number>();
    while (Date.now() < deadline) {
      iterations++;
      const roll = Math.random();
      const v = Math.floor(Math.random() * versions.length);
      const args = roll < 0.55 ? ['backup', versions[v]!, '--disk', `d${v % 2}`, '--tag', `v${v}`]
        : roll < 0.7 ? ['prune', '--keep-last', '3']
          : roll < 0.8 ? ['delete', 'placeholder']
            : ['gc'];
      if (args[0] === 'delete') {
        const list = await fleece(repo, ['list', '--json'], env);
        const all = JSON.parse(list.stdout || '[]') as { id: string }[];
        if (all.length < 2) continue;
        args[1] = all[Math.floor(Math.random() * all.length)]!.id;
      }
      // Kill somewhere between process start and a typical finish; let one in five run to
      // completion so there are survivors to restore.
      const typical = typicalMs.get(args[0]!) ?? 1500;
      const result = await runKilled(repo, args, Math.random() < 0.2 ? 60_000 : 50 + Math.random() * typical);
      if (result.killed) kills++;
      else if (result.code === 0) typicalMs.set(args[0]!, (typical + result.ms) / 2);
    }
    t.diagnostic(`${kills} kills in ${iterations} iterations`);
    assert.ok(kills >= 5, `only ${kills} kills in ${iterations} iterations`);

    // Nothing listed is broken, even before cleanup.
    let check = await fleece(repo, ['repo', 'check', '--json'], env);
    assert.deepEqual((JSON.parse(check.stdout) as { errors: string[] }).errors, [], check.stdout);
    const restored = await restoreAll(repo, dir.path);
    assert.ok(restored.size > 0, `no backup survived ${iterations} iterations`);
    for (const [id, { sha, tags }] of restored) assert.equal(sha, shas[Number(tags[0]!.slice(1))], `backup ${id} (${tags[0]}) restores identical`);

    // Once the killed processes' leases are dead, gc reclaims every orphan.
    await sleep(TTL_MS + 500);
    const gc = await fleece(repo, ['gc', '--json'], env);
    assert.equal(gc.code, 0, gc.stderr);
    assert.equal((JSON.parse(gc.stdout) as { mode: string }).mode, 'immediate');
    check = await fleece(repo, ['repo', 'check', '--json'], env);
    assert.equal(check.code, 0, check.stdout);
    const report = JSON.parse(check.stdout) as { errors: string[]; unreferencedPacks: string[]; warnings: string[] };
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.unreferencedPacks, [], 'gc left orphan packs');
    assert.ok(!report.warnings.some((w) => /have no pack/.test(w)), report.warnings.join('; '));
    const again = await restoreAll(repo, dir.path);
    assert.deepEqual([...again.keys()].sort(), [...restored.keys()].sort());
    for (const [id, { sha }] of again) assert.equal(sha, restored.get(id)!.sha);
  } finally {
    await dir.cleanup();
  }
});
