// Round trips: random, compressible and sparse images backed up and restored byte-identical,
// plain and encrypted, at 16K/64K/1M chunks; incrementals from a parent; passphrase handling.

import assert from 'node:assert/strict';
import { stat, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileSource } from '../../src/repo/backup-source.js';
import { runBackup } from '../../src/repo/backup-engine.js';
import { Repository } from '../../src/repo/repository.js';
import { runRestore } from '../../src/repo/restore-engine.js';
import { BackupReader } from '../../src/repo/backup-reader.js';
import { LocalStore } from '../../src/repo/stores/local-store.js';
import { MemoryStore } from '../../src/repo/stores/memory-store.js';
import { scratchDir } from '../helpers/tools.js';
import { fleece, makeImage, sha256File, type ImageKind } from './helpers.js';

const SIZE = 6 * 1024 * 1024 + 12_345; // not a multiple of any chunk size

test('restore writing back and evicting every 256 KiB, with and without the final sync: identical image', async () => {
  const dir = await scratchDir();
  try {
    const repo = await Repository.init(new LocalStore(join(dir.path, 'repo')), { catalogPath: join(dir.path, 'catalog.sqlite') });
    const image = join(dir.path, 'random.img');
    await makeImage(image, 'random', SIZE);
    const source = await FileSource.open(image);
    const manifest = await runBackup(repo, source, { disk: 'random' });
    await source.close();
    for (const sync of [true, false]) {
      const out = join(dir.path, `out-${sync}.img`);
      let progressCalls = 0;
      await runRestore(repo, manifest, out, { sync, writeBackEvery: 256 * 1024, onProgress: () => void progressCalls++ });
      assert.ok(progressCalls > SIZE / (4 * 1024 * 1024), `several spans, so several write-backs (${progressCalls} progress calls)`);
      assert.equal(await sha256File(out), await sha256File(image), `sync ${sync}: restored identical`);
    }
    repo.close();
  } finally {
    await dir.cleanup();
  }
});

test('restore leaves zero pages inside data chunks as holes: scattered 4 KiB writes restore identical and as sparse', async () => {
  const dir = await scratchDir();
  try {
    const repo = await Repository.init(new LocalStore(join(dir.path, 'repo')), { chunkSize: 1024 * 1024, catalogPath: join(dir.path, 'catalog.sqlite') });
    const image = join(dir.path, 'scattered.img');
    const size = 16 * 1024 * 1024 + 5000; // a short last chunk whose last page is short too
    const handle = await open(image, 'w');
    await handle.truncate(size);
    // One 4 KiB page of data in each 1 MiB chunk, plus a page at the very end that is partly data.
    for (let chunk = 0; chunk < 16; chunk++) await handle.write(Buffer.alloc(4096, chunk + 1), 0, 4096, chunk * 1024 * 1024 + ((chunk * 37) % 256) * 4096);
    await handle.write(Buffer.alloc(100, 0xee), 0, 100, size - 200);
    await handle.close();
    const source = await FileSource.open(image);
    const manifest = await runBackup(repo, source, { disk: 'scattered' });
    await source.close();
    assert.equal(manifest.counts.zeroSlots, 0, 'every chunk holds data');
    const out = join(dir.path, 'out.img');
    let restored = 0;
    await runRestore(repo, manifest, out, { onProgress: (p) => (restored = p.bytesDone) });
    assert.equal(await sha256File(out), await sha256File(image), 'restored identical');
    assert.equal(restored, size, 'progress counts the zero pages left as holes');
    const st = await stat(out);
    assert.ok(st.blocks * 512 <= 17 * 4096 + 64 * 1024, `restore allocates ${st.blocks * 512} bytes for 17 pages of data in 17 MiB of chunks`);
    repo.close();
  } finally {
    await dir.cleanup();
  }
});

test('restore preallocates only what it writes: the zero pages between long runs of data stay holes', async () => {
  const dir = await scratchDir();
  try {
    const repo = await Repository.init(new LocalStore(join(dir.path, 'repo')), { chunkSize: 1024 * 1024, catalogPath: join(dir.path, 'catalog.sqlite') });
    const image = join(dir.path, 'halves.img');
    const size = 8 * 1024 * 1024;
    const handle = await open(image, 'w');
    await handle.truncate(size);
    // Each 1 MiB chunk: 512 KiB of random data (a run long enough to preallocate), then zeros.
    for (let chunk = 0; chunk < 8; chunk++) {
      const data = Buffer.alloc(512 * 1024);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
      await handle.write(data, 0, data.length, chunk * 1024 * 1024);
    }
    await handle.close();
    const source = await FileSource.open(image);
    const manifest = await runBackup(repo, source, { disk: 'halves' });
    await source.close();
    const out = join(dir.path, 'out.img');
    await runRestore(repo, manifest, out);
    assert.equal(await sha256File(out), await sha256File(image), 'restored identical');
    const st = await stat(out);
    assert.ok(st.blocks * 512 >= 4 * 1024 * 1024, `the data is there: ${st.blocks * 512} bytes allocated`);
    assert.ok(st.blocks * 512 <= 4 * 1024 * 1024 + 64 * 1024, `only the 4 MiB of data is allocated, not ${st.blocks * 512} bytes`);
    repo.close();
  } finally {
    await dir.cleanup();
  }
});

for (const encrypt of [false, true]) {
  for (const chunkSize of [16 * 1024, 64 * 1024, 1024 * 1024]) {
    test(`round trip ${encrypt ? 'encrypted' : 'plain'} chunk ${chunkSize / 1024}K`, async () => {
      const dir = await scratchDir();
      try {
        const store = new LocalStore(join(dir.path, 'repo'));
        const repo = await Repository.init(store, { encrypt, secret: { passphrase: 'pw' }, chunkSize, packSize: 4 * 1024 * 1024, catalogPath: join(dir.path, 'catalog.sqlite') });
        for (const kind of ['random', 'compressible', 'sparse'] as ImageKind[]) {
          const image = join(dir.path, `${kind}.img`);
          await makeImage(image, kind, SIZE);
          const source = await FileSource.open(image);
          const manifest = await runBackup(repo, source, { disk: kind });
          await source.close();
          const out = join(dir.path, `${kind}.out`);
          await runRestore(repo, manifest, out);
          assert.equal(await sha256File(out), await sha256File(image), `${kind} restored identical`);
          if (kind === 'sparse') {
            const st = await stat(out);
            // Zero slots are holes: allocation is bounded by the data slots.
            const dataBytes = (manifest.counts.slots - manifest.counts.zeroSlots) * chunkSize;
            assert.ok(st.blocks * 512 <= dataBytes + 64 * 1024, `sparse restore allocates ${st.blocks * 512} bytes, data slots ${dataBytes}`);
            assert.ok(manifest.counts.zeroSlots > 0 || chunkSize > 512 * 1024);
          }
          if (kind === 'compressible') assert.ok(manifest.counts.newBytes < SIZE / 4, `compressed to ${manifest.counts.newBytes}`);
        }
        repo.close();
        // A fresh catalog (rebuilt from the store) restores the same bytes.
        const again = await Repository.open(store, { secret: { passphrase: 'pw' } });
        await again.syncCatalog();
        assert.equal(again.catalog.backups().length, 3);
        const m = again.catalog.backups().find((b) => b.disk === 'random')!;
        await runRestore(again, m, join(dir.path, 'again.out'));
        assert.equal(await sha256File(join(dir.path, 'again.out')), await sha256File(join(dir.path, 'random.img')));
        again.close();
      } finally {
        await dir.cleanup();
      }
    });
  }
}

test('second backup of the same image stores nothing new; incremental copies the parent', async () => {
  const dir = await scratchDir();
  try {
    const repo = await Repository.init(new MemoryStore(), { chunkSize: 16 * 1024 });
    const image = join(dir.path, 'a.img');
    await makeImage(image, 'random', 3 * 1024 * 1024);
    let source = await FileSource.open(image);
    const first = await runBackup(repo, source, { disk: 'a' });
    const second = await runBackup(repo, source, { disk: 'a' });
    await source.close();
    assert.equal(second.counts.newChunks, 0);
    assert.equal(second.root, first.root);
    // Change 2 slots, tell the engine only those changed: other slots come from the parent unread.
    const file = await open(image, 'r+');
    await file.write(Buffer.alloc(100, 7), 0, 100, 40_000);
    await file.write(Buffer.alloc(10, 9), 0, 10, 2_000_000);
    await file.close();
    source = await FileSource.open(image);
    const incr = await runBackup(repo, source, { disk: 'a', parent: first.id.slice(0, 8), changed: [{ offset: 40_000, length: 100 }, { offset: 2_000_000, length: 10 }] });
    await source.close();
    assert.equal(incr.parent, first.id);
    assert.equal(incr.counts.newChunks, 2);
    const out = join(dir.path, 'out.img');
    await runRestore(repo, incr, out);
    assert.equal(await sha256File(out), await sha256File(image));
    const reader = await BackupReader.open(repo, incr);
    const got = Buffer.alloc(100);
    await reader.read(40_000, got);
    assert.ok(got.equals(Buffer.alloc(100, 7)));
    repo.close();
  } finally {
    await dir.cleanup();
  }
});

test('cli: encrypted repository, wrong passphrase is a clear error, key file works', async () => {
  const dir = await scratchDir();
  try {
    const repo = join(dir.path, 'repo');
    const image = join(dir.path, 'img');
    await makeImage(image, 'sparse', 3 * 1024 * 1024);
    let r = await fleece(repo, ['init', '--encrypt', '--chunk-size', '16K'], { FLEECE_PASSWORD: 'right' });
    assert.equal(r.code, 0, r.stderr);
    r = await fleece(repo, ['backup', image, '--disk', 'vm', '--json', '--tag', 'x'], { FLEECE_PASSWORD: 'right' });
    assert.equal(r.code, 0, r.stderr);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    r = await fleece(repo, ['list', '--json'], { FLEECE_PASSWORD: 'wrong' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /wrong passphrase/);
    r = await fleece(repo, ['restore', id.slice(0, 6), join(dir.path, 'out')], { FLEECE_PASSWORD: 'right' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(dir.path, 'out')), await sha256File(image));
    r = await fleece(repo, ['show', 'zzzz'], { FLEECE_PASSWORD: 'right' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no backup with id 'zzzz'/);
    // key-file repository
    const keyFile = join(dir.path, 'key');
    await writeFile(keyFile, Buffer.alloc(64, 3));
    const repo2 = join(dir.path, 'repo2');
    assert.equal((await fleece(repo2, ['init', '--encrypt', '--key-file', keyFile])).code, 0);
    r = await fleece(repo2, ['backup', image, '--disk', 'vm', '--json'], { FLEECE_KEY_FILE: keyFile });
    assert.equal(r.code, 0, r.stderr);
    await writeFile(keyFile, Buffer.alloc(64, 4));
    r = await fleece(repo2, ['list'], { FLEECE_KEY_FILE: keyFile });
    assert.match(r.stderr, /wrong passphrase or key file/);
  } finally {
    await dir.cleanup();
  }
});
