// Runs the store conformance suite against the memory and local-directory stores.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { pageAlignedBuffer } from '../../src/core/page-aligned.js';
import { MemoryStore } from '../../src/repo/stores/memory-store.js';
import { LocalStore } from '../../src/repo/stores/local-store.js';
import { scratchDir } from '../helpers/tools.js';
import { runStoreConformance } from './store-conformance.js';

runStoreConformance('memory', async () => ({ store: new MemoryStore(), cleanup: async () => undefined }));

runStoreConformance('local', async () => {
  const dir = await scratchDir('fleece-store-');
  return { store: new LocalStore(dir.path), cleanup: dir.cleanup };
});

// Large objects go out with O_DIRECT: straight from a page-aligned buffer (whole blocks; the tail
// through the addon's bounce buffer), else all through the bounce buffer. Any length, any buffer
// (unaligned views, shared memory), the file exactly the object's bytes, no temp file left.
test('local store: large objects of odd sizes from unaligned and shared buffers read back intact', async () => {
  const dir = await scratchDir('fleece-store-');
  try {
    const store = new LocalStore(dir.path);
    const backing = randomBytes(3 * 1024 * 1024 + 10_000);
    const shared = new SharedArrayBuffer(2 * 1024 * 1024 + 512);
    new Uint8Array(shared).set(backing.subarray(0, shared.byteLength));
    const cases: [string, Uint8Array][] = [
      ['exact-mib', backing.subarray(0, 1024 * 1024)],
      ['unaligned-odd', backing.subarray(3, 3 + 2 * 1024 * 1024 + 4097)],
      ['shared', new Uint8Array(shared, 7, shared.byteLength - 7)],
      ['aligned-odd', fill(pageAlignedBuffer(2 * 1024 * 1024 + 4097, true), backing)],
      ['aligned-whole-blocks', fill(pageAlignedBuffer(1024 * 1024 + 8192, false), backing.subarray(5))],
    ];
    for (const [name, data] of cases) {
      await store.put(`packs/00/${name}`, data, { ifAbsent: true });
      const back = await store.get(`packs/00/${name}`);
      assert.equal(back.length, data.byteLength, name);
      assert.ok(back.equals(data), `${name} reads back byte for byte`);
    }
    assert.deepEqual((await readdir(join(dir.path, 'packs', '00'))).filter((f) => f.startsWith('.tmp-')), []);
  } finally {
    await dir.cleanup();
  }
});

function fill(target: Buffer, source: Buffer): Buffer {
  source.copy(target, 0, 0, target.length);
  return target;
}
