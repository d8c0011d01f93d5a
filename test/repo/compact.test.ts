// Compact: after most backups are deleted, `fleece compact` repacks the mostly-dead packs; the
// remaining backups restore identical, stored bytes drop, and a backup that was running when
// compact started (and commits while it waits) keeps every blob it references.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCheck } from '../../src/repo/check.js';
import { runCompact } from '../../src/repo/compact.js';
import { Lease } from '../../src/repo/leases.js';
import { manifestKey } from '../../src/repo/manifest.js';
import { Repository } from '../../src/repo/repository.js';
import type { StoreSignal } from '../../src/repo/store.js';
import { LocalStore } from '../../src/repo/stores/local-store.js';
import { scratchDir } from '../helpers/tools.js';
import { CountingStore, fleece, restoreAll, sha256File } from './helpers.js';

const CHUNK = 16 * 1024;
const SLOTS = 64;

/** 1 MiB images whose every 4th chunk is shared by all of them; the rest is unique to each. */
async function makeImages(dir: string, count: number): Promise<string[]> {
  const shared = randomBytes(SLOTS * CHUNK);
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const image = randomBytes(SLOTS * CHUNK);
    for (let s = 0; s < SLOTS; s += 4) shared.copy(image, s * CHUNK, s * CHUNK, (s + 1) * CHUNK);
    paths.push(join(dir, `v${i}.img`));
    await writeFile(paths[i]!, image);
  }
  return paths;
}

async function packBytes(repoDir: string): Promise<number> {
  let total = 0;
  for (const sub of await readdir(join(repoDir, 'packs'))) {
    for (const name of await readdir(join(repoDir, 'packs', sub))) total += (await stat(join(repoDir, 'packs', sub, name))).size;
  }
  return total;
}

test('compact repacks mostly-dead packs: survivors restore identical, stored bytes drop', async () => {
  const dir = await scratchDir();
  try {
    const repoDir = join(dir.path, 'repo');
    assert.equal((await fleece(repoDir, ['init', '--chunk-size', '16K', '--pack-size', '256K'])).code, 0);
    const images = await makeImages(dir.path, 5);
    const ids: string[] = [];
    for (const [i, image] of images.entries()) {
      const r = await fleece(repoDir, ['backup', image, '--disk', `vm${i}`, '--json']);
      assert.equal(r.code, 0, r.stderr);
      ids.push((JSON.parse(r.stdout) as { id: string }).id);
    }
    // Keep 2 and 4. Backup 0's packs hold the shared chunks (a quarter of each pack, still live)
    // and its own dead ones; 1's and 3's packs are all dead.
    for (const i of [0, 1, 3]) assert.equal((await fleece(repoDir, ['delete', ids[i]!])).code, 0);
    const before = await packBytes(repoDir);

    const dry = await fleece(repoDir, ['compact', '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const dryReport = JSON.parse(dry.stdout) as { repackedPacks: string[]; copiedBytes: number };
    assert.ok(dryReport.repackedPacks.length > 0);
    assert.equal(await packBytes(repoDir), before, 'dry run changes nothing');

    const run = await fleece(repoDir, ['compact', '--threshold', '50%', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { repackedPacks: string[]; copiedBlobs: number; copiedBytes: number; freedBytes: number };
    assert.deepEqual(report.repackedPacks.sort(), dryReport.repackedPacks.sort());
    assert.equal(report.copiedBlobs, SLOTS / 4, 'exactly the shared chunks were copied');
    assert.equal(report.copiedBytes, (SLOTS / 4) * CHUNK, 'copied verbatim (random chunks are stored raw)');
    const after = await packBytes(repoDir);
    assert.ok(after < before * 0.6, `pack bytes ${before} -> ${after}`);
    assert.equal(before - after, report.freedBytes);

    const restored = await restoreAll(repoDir, dir.path);
    assert.deepEqual([...restored.keys()].sort(), [ids[2]!, ids[4]!].sort());
    assert.equal(restored.get(ids[2]!)!.sha, await sha256File(images[2]!));
    assert.equal(restored.get(ids[4]!)!.sha, await sha256File(images[4]!));
    const repo = await Repository.open(new LocalStore(repoDir));
    await repo.syncCatalog();
    const check = await runCheck(repo);
    assert.deepEqual(check.errors, []);
    assert.equal(check.unreferencedPacks.length, 0);
    // A second compact finds nothing below the threshold.
    assert.equal((await runCompact(repo)).repackedPacks.length, 0);
    repo.close();
  } finally {
    await dir.cleanup();
  }
});

/** Resolves once compact has polled the leases a few times (it waits for a running backup). */
class LeaseWatch extends CountingStore {
  leaseLists = 0;
  override list(prefix: string, options?: StoreSignal) {
    if (prefix === 'leases/') this.leaseLists++;
    return super.list(prefix, options);
  }
}

test('compact waits for a backup that was running before it marks, and keeps what it committed', async () => {
  const dir = await scratchDir();
  try {
    const repoDir = join(dir.path, 'repo');
    assert.equal((await fleece(repoDir, ['init', '--chunk-size', '16K', '--pack-size', '256K'])).code, 0);
    const images = await makeImages(dir.path, 3);
    const ids: string[] = [];
    for (const [i, image] of images.entries()) {
      const r = await fleece(repoDir, ['backup', image, '--disk', `vm${i}`, '--json']);
      assert.equal(r.code, 0, r.stderr);
      ids.push((JSON.parse(r.stdout) as { id: string }).id);
    }
    // Backup 1 is deleted, but a backup that started before compact deduplicated against all of
    // its blobs: it commits the very same manifest while compact waits for it. Backup 0 is
    // deleted for good: its packs keep only the shared quarter live.
    const manifestPath = join(repoDir, ...manifestKey(ids[1]!).split('/'));
    const manifestBytes = await readFile(manifestPath);
    for (const i of [0, 1]) assert.equal((await fleece(repoDir, ['delete', ids[i]!])).code, 0);
    const store = new LeaseWatch(new LocalStore(repoDir));
    const running = await Lease.acquire(store, 'backup');
    const repo = await Repository.open(store);
    const compact = runCompact(repo, { threshold: 0.5 });
    while (store.leaseLists < 3) await new Promise((resolve) => setTimeout(resolve, 20)); // compact is polling
    await store.put(manifestKey(ids[1]!), manifestBytes, { ifAbsent: true });
    await running.release();
    const report = await compact;
    assert.equal(report.waitedForBackups, 1);
    // Marked after the wait: backup 1's packs are live again and stay; backup 0's were repacked.
    assert.equal(report.copiedBlobs, SLOTS / 4);
    assert.ok(report.repackedPacks.length > 0);
    repo.close();

    const restored = await restoreAll(repoDir, dir.path);
    assert.deepEqual([...restored.keys()].sort(), [ids[1]!, ids[2]!].sort());
    for (const i of [1, 2]) assert.equal(restored.get(ids[i]!)!.sha, await sha256File(images[i]!), `backup ${i} restores`);
  } finally {
    await dir.cleanup();
  }
});
