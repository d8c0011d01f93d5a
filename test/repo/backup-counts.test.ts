// A backup's counts are what operators and benchmarks read: new bytes stored must add up across
// batches processed concurrently, and match what the packs really hold.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { MemoryStore, Repository, runBackup } from '../../src/repo/index.js';

test('newChunks and newBytes count every stored chunk of a backup', async () => {
  const store = new MemoryStore();
  const repo = await Repository.init(store, { chunkSize: 64 * 1024 });
  try {
    const image = randomBytes(48 * 1024 * 1024); // incompressible: stored bytes >= raw bytes
    const source = { size: image.length, read: async (offset: number, target: Uint8Array) => void target.set(image.subarray(offset, offset + target.length)) };
    const manifest = await runBackup(repo, source, { disk: 'vm' });
    assert.equal(manifest.counts.newChunks, image.length / (64 * 1024));
    assert.ok(manifest.counts.newBytes >= image.length, `newBytes ${manifest.counts.newBytes} < ${image.length}`);
    let packBytes = 0;
    for await (const entry of store.list('packs/')) packBytes += entry.size;
    assert.ok(manifest.counts.newBytes <= packBytes, `newBytes ${manifest.counts.newBytes} > ${packBytes} bytes of packs`);
  } finally {
    repo.close();
  }
});
