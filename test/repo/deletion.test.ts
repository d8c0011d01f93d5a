// Deletion: a chain of 5 backups, delete the middle one: the others restore, gc frees exactly
// its unique data, and delete + gc write no chunk data (counted through a store wrapper).

import assert from 'node:assert/strict';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { FileSource } from '../../src/repo/backup-source.js';
import { runBackup } from '../../src/repo/backup-engine.js';
import { runGc } from '../../src/repo/gc.js';
import { runCheck } from '../../src/repo/check.js';
import type { Manifest } from '../../src/repo/manifest.js';
import { Repository } from '../../src/repo/repository.js';
import { runRestore } from '../../src/repo/restore-engine.js';
import { LocalStore } from '../../src/repo/stores/local-store.js';
import { scratchDir } from '../helpers/tools.js';
import { CountingStore, makeImage, sha256File } from './helpers.js';

test('delete the middle of a chain of 5: others restore, gc frees its data, nothing rewritten', async () => {
  const dir = await scratchDir();
  try {
    const store = new CountingStore(new LocalStore(join(dir.path, 'repo')));
    // Small packs so each backup's unique data sits in its own packs.
    const repo = await Repository.init(store, { chunkSize: 16 * 1024, packSize: 256 * 1024 });
    const image = join(dir.path, 'disk.img');
    await makeImage(image, 'random', 2 * 1024 * 1024);
    const backups: { manifest: Manifest; sha: string; copy: string }[] = [];
    for (let i = 0; i < 5; i++) {
      // each step rewrites the same 512 KiB: the data of backup i is unique to it (for i > 0)
      const file = await open(image, 'r+');
      await file.write(randomBytes(512 * 1024), 0, undefined, 0);
      await file.close();
      const copy = join(dir.path, `v${i}.img`);
      await writeFile(copy, await readFile(image));
      const source = await FileSource.open(image);
      backups.push({ manifest: await runBackup(repo, source, { disk: 'vm', time: new Date(Date.UTC(2024, 0, 1 + i)) }), sha: await sha256File(copy), copy });
      await source.close();
    }
    const middle = backups[2]!.manifest;
    const packFiles = async (): Promise<Map<string, { ino: number; mtimeMs: number }>> => {
      const out = new Map<string, { ino: number; mtimeMs: number }>();
      for await (const { key } of store.list('packs/')) {
        const st = await (await import('node:fs/promises')).stat(join(dir.path, 'repo', key));
        out.set(key, { ino: st.ino, mtimeMs: st.mtimeMs });
      }
      return out;
    };
    const before = await packFiles();
    const bytesBefore = store.bytesPut;
    const putsBefore = store.puts.length;
    await repo.deleteBackup(middle.id);
    const report = await runGc(repo);
    assert.equal(report.mode, 'immediate');
    assert.ok(report.deletedPacks.length > 0, 'gc freed the deleted backup\'s unique packs');
    assert.ok(report.deletedBytes >= 256 * 1024, `freed ${report.deletedBytes} bytes`);
    // Nothing but leases and the condemned list was written: no pack, no index, no manifest.
    const newPuts = store.puts.slice(putsBefore);
    assert.deepEqual(newPuts.filter((k) => !k.startsWith('leases/') && !k.startsWith('gc/')), []);
    assert.ok(store.bytesPut - bytesBefore < 4096, `delete+gc wrote ${store.bytesPut - bytesBefore} bytes`);
    // Surviving packs are the very same files (same inode and mtime): never rewritten.
    const after = await packFiles();
    for (const [key, st] of after) assert.deepEqual(st, before.get(key), `${key} untouched`);
    assert.equal(after.size, before.size - report.deletedPacks.length);
    // The others restore identical; check is clean; a second gc has nothing to do.
    for (const b of backups) {
      if (b.manifest.id === middle.id) continue;
      const out = join(dir.path, 'out.img');
      await runRestore(repo, b.manifest, out);
      assert.equal(await sha256File(out), b.sha, `backup ${b.manifest.id} restores`);
    }
    const check = await runCheck(repo);
    assert.deepEqual(check.errors, []);
    assert.equal(check.unreferencedPacks.length, 0);
    assert.equal((await runGc(repo)).deletedPacks.length, 0);
    repo.close();
  } finally {
    await dir.cleanup();
  }
});
