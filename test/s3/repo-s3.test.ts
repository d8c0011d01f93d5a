// The repository on a real radosgw: engine and CLI round trips, a backup process killed
// mid-upload, and the gateway itself killed mid-backup then restarted (mon and OSD keep the
// data): the repository must stay consistent (`fleece repo check` clean) and back up again.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { FileSource } from '../../src/repo/backup-source.js';
import { runBackup } from '../../src/repo/backup-engine.js';
import { Repository } from '../../src/repo/repository.js';
import { runRestore } from '../../src/repo/restore-engine.js';
import { openStore } from '../../src/repo/stores/open-store.js';
import { startRgw, type Rgw } from '../helpers/rgw.js';
import { scratchDir } from '../helpers/tools.js';
import { fleece, makeImage, sha256File, type ImageKind } from '../repo/helpers.js';

const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '../../src/cli/fleece.cjs');
let rgw: Rgw;
let dir: { path: string; cleanup: () => Promise<void> };

before(async () => {
  rgw = await startRgw();
  dir = await scratchDir('fleece-s3-repo-');
}, { timeout: 240_000 });

after(async () => {
  await rgw?.stop();
  await dir?.cleanup();
});

function json<T>(stdout: string): T {
  return JSON.parse(stdout) as T;
}

async function countKeys(location: string, prefix: string): Promise<number> {
  const store = await openStore(location);
  try {
    let n = 0;
    for await (const entry of store.list(prefix)) n += entry.key ? 1 : 0;
    return n;
  } finally {
    await store.close?.();
  }
}

for (const encrypt of [false, true]) {
  test(`engine round trip over s3 (${encrypt ? 'encrypted' : 'plain'}); a second host with a fresh catalog restores too`, async () => {
    const location = `s3://repo-engine/${encrypt ? 'enc' : 'plain'}`;
    const secret = { passphrase: 'pw' };
    const repo = await Repository.init(await openStore(location, { create: true }), { encrypt, secret, chunkSize: 16 * 1024, packSize: 2 * 1024 * 1024, catalogPath: ':memory:' });
    const images: Record<string, string> = {};
    const ids: Record<string, string> = {};
    for (const kind of ['random', 'compressible', 'sparse'] as ImageKind[]) {
      images[kind] = join(dir.path, `${location.replace(/\W/g, '-')}-${kind}.img`);
      await makeImage(images[kind], kind, 5 * 1024 * 1024 + 4321);
      const source = await FileSource.open(images[kind]);
      const manifest = await runBackup(repo, source, { disk: kind });
      await source.close();
      ids[kind] = manifest.id;
      const out = `${images[kind]}.out`;
      await runRestore(repo, manifest, out);
      assert.equal(await sha256File(out), await sha256File(images[kind]), `${kind} restored identical`);
    }
    // Same image again: nothing new goes to the bucket.
    const source = await FileSource.open(images.random!);
    const again = await runBackup(repo, source, { disk: 'random' });
    await source.close();
    assert.equal(again.counts.newChunks, 0);
    repo.close();
    await repo.store.close?.();

    const saved = process.env.FLEECE_CACHE_DIR;
    process.env.FLEECE_CACHE_DIR = join(dir.path, 'other-host-cache');
    try {
      const other = await Repository.open(await openStore(location), { secret, catalogPath: ':memory:' });
      await other.syncCatalog();
      assert.equal(other.catalog.backups().length, 4);
      for (const kind of Object.keys(ids)) {
        const out = join(dir.path, `other-${kind}.out`);
        await runRestore(other, other.resolveBackup(ids[kind]!), out);
        assert.equal(await sha256File(out), await sha256File(images[kind]!));
      }
      other.close();
      await other.store.close?.();
    } finally {
      process.env.FLEECE_CACHE_DIR = saved;
    }
  });
}

test('cli over s3: init creates the bucket; backup, list, restore, verify, check, delete, gc', async () => {
  const repo = 's3://cli-bucket/some/prefix';
  const image = join(dir.path, 'cli.img');
  await makeImage(image, 'random', 4 * 1024 * 1024);
  let r = await fleece(repo, ['init', '--chunk-size', '32K', '--pack-size', '1M']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'no SDK warnings on stderr');
  assert.match((await fleece(repo, ['init'])).stderr, /already exists/);
  r = await fleece(repo, ['backup', image, '--disk', 'vm', '--json']);
  assert.equal(r.code, 0, r.stderr);
  // With --json, stderr carries JSON progress events; anything else (an SDK warning) is a failure.
  assert.deepEqual(r.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{"event":')), []);
  const first = json<{ id: string }>(r.stdout).id;
  const file = await open(image, 'r+');
  await file.write(Buffer.alloc(70_000, 5), 0, 70_000, 1_000_000);
  await file.close();
  r = await fleece(repo, ['backup', image, '--disk', 'vm', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const second = json<{ id: string }>(r.stdout).id;
  r = await fleece(repo, ['list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((json<unknown[]>(r.stdout)).length, 2);
  r = await fleece(repo, ['restore', second.slice(0, 8), join(dir.path, 'cli.out')]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await sha256File(join(dir.path, 'cli.out')), await sha256File(image));
  assert.equal((await fleece(repo, ['verify'])).code, 0);
  assert.equal((await fleece(repo, ['delete', first])).code, 0);
  const packsBefore = await countKeys(repo, 'packs/');
  r = await fleece(repo, ['gc', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(json<{ deletedPacks: string[] }>(r.stdout).deletedPacks.length > 0, 'the deleted backup freed packs');
  assert.ok((await countKeys(repo, 'packs/')) < packsBefore);
  r = await fleece(repo, ['repo', 'check', '--json']);
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(json<{ errors: string[]; warnings: string[] }>(r.stdout).errors, []);
  r = await fleece(repo, ['restore', second, join(dir.path, 'cli2.out')]);
  assert.equal(await sha256File(join(dir.path, 'cli2.out')), await sha256File(image));
  assert.equal((await countKeys('s3://cli-bucket', '')), await countKeys('s3://cli-bucket/some/prefix', ''), 'nothing outside the prefix');
});

/** Starts `fleece backup` and resolves once the bucket holds at least one of its packs. */
function startBackup(repo: string, image: string, env: Record<string, string>): { done: Promise<{ code: number | null; stderr: string; stdout: string }>; kill: () => void } {
  const child = spawn(process.execPath, [MAIN, 'backup', image, '--disk', 'big', '--json'], { env: { ...process.env, FLEECE_REPO: repo, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr, stdout })));
  return { done, kill: () => child.kill('SIGKILL') };
}

async function waitForPacks(repo: string, atLeast: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await countKeys(repo, 'packs/')) < atLeast) {
    if (Date.now() > deadline) throw new Error(`no pack appeared in ${repo}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

async function assertCheckClean(repo: string, env: Record<string, string> = {}): Promise<{ warnings: string[] }> {
  const r = await fleece(repo, ['repo', 'check', '--json'], env);
  assert.equal(r.code, 0, `repo check: ${r.stdout}${r.stderr}`);
  const report = json<{ errors: string[]; warnings: string[] }>(r.stdout);
  assert.deepEqual(report.errors, []);
  return report;
}

test('a backup process killed mid-upload leaves the repository consistent; gc reclaims its packs', async () => {
  const repo = 's3://crash-bucket/r';
  const env = { FLEECE_LEASE_TTL_MS: '2000' };
  const image = join(dir.path, 'crash.img');
  await makeImage(image, 'random', 64 * 1024 * 1024);
  assert.equal((await fleece(repo, ['init', '--pack-size', '2M'], env)).code, 0);
  const backup = startBackup(repo, image, { ...env, FLEECE_S3_CONCURRENCY: '2' });
  await waitForPacks(repo, 2);
  backup.kill();
  const killed = await backup.done;
  assert.equal(killed.code, null, 'killed before it finished');
  assert.equal(await countKeys(repo, 'manifests/'), 0);
  const report = await assertCheckClean(repo, env);
  assert.ok(report.warnings.some((w) => /packs hold no referenced blob|lease/.test(w)), report.warnings.join('; '));
  // Its lease dies after the ttl; gc then deletes the orphaned packs at once.
  await new Promise((r) => setTimeout(r, 2500));
  let r = await fleece(repo, ['gc', '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  const gc = json<{ mode: string; deletedPacks: string[] }>(r.stdout);
  assert.equal(gc.mode, 'immediate');
  assert.ok(gc.deletedPacks.length > 0);
  assert.equal(await countKeys(repo, 'packs/'), 0);
  r = await fleece(repo, ['backup', image, '--disk', 'big', '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  r = await fleece(repo, ['restore', json<{ id: string }>(r.stdout).id, join(dir.path, 'crash.out')], env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await sha256File(join(dir.path, 'crash.out')), await sha256File(image));
  assert.equal((await fleece(repo, ['gc'], env)).code, 0);
  const after = await assertCheckClean(repo, env);
  assert.deepEqual(after.warnings, []);
});

test('radosgw killed mid-backup: the backup fails cleanly, the repository stays consistent, and after a restart the next backup succeeds', async (t) => {
  const repo = 's3://outage-bucket/r';
  const image = join(dir.path, 'outage.img');
  await makeImage(image, 'random', 64 * 1024 * 1024);
  const small = join(dir.path, 'outage-small.img');
  await makeImage(small, 'sparse', 8 * 1024 * 1024);
  assert.equal((await fleece(repo, ['init', '--pack-size', '2M'])).code, 0);
  let r = await fleece(repo, ['backup', small, '--disk', 'small', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const before = json<{ id: string }>(r.stdout).id;

  const env = { FLEECE_S3_CONCURRENCY: '2', FLEECE_S3_ATTEMPTS: '4' };
  const backup = startBackup(repo, image, env);
  await waitForPacks(repo, 3);
  rgw.killGateway();
  const failed = await backup.done;
  t.diagnostic(`failed backup said: ${failed.stderr.trim()}`);
  try {
    assert.equal(failed.code, 1, `exit status: ${failed.stderr}`);
    assert.match(failed.stderr, /s3 (put|get|list|delete|stat) of .*failed/);
    assert.doesNotMatch(failed.stderr, /^\s+at /m, 'an error message, not a stack trace');
    assert.doesNotMatch(failed.stderr, /MaxListenersExceededWarning/, 'retries and backoffs do not pile abort listeners on one signal');
    assert.equal(failed.stdout, '');
  } finally {
    await rgw.restartGateway();
  }
  const report = await assertCheckClean(repo);
  assert.equal(report.warnings.length > 0, true, 'the half-written backup left unreferenced packs or a lease');
  r = await fleece(repo, ['backup', image, '--disk', 'big', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const id = json<{ id: string }>(r.stdout).id;
  for (const [backupId, source] of [[id, image], [before, small]] as const) {
    const out = join(dir.path, `outage-${backupId}.out`);
    r = await fleece(repo, ['restore', backupId, out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), await sha256File(source));
  }
  assert.equal((await fleece(repo, ['verify'])).code, 0);
  await assertCheckClean(repo);
});
