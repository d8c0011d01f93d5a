// Dirty bitmaps: range marking against a naive model, extents, merge, resize, and the side file's
// in-use flag turning an uncleanly closed bitmap inconsistent.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DirtyBitmap } from '../../src/block/bitmap/dirty-bitmap.js';
import { loadBitmap, markInUse, saveBitmap } from '../../src/block/bitmap/bitmap-file.js';
import { BitmapSet } from '../../src/block/bitmap/bitmap-set.js';
import { DirtyTrackerDevice } from '../../src/block/filters/dirty-tracker.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { scratchDir } from '../helpers/tools.js';

const G = 4096;

function model(bitmap: DirtyBitmap): boolean[] {
  const out: boolean[] = [];
  for (const e of bitmap.extents()) {
    for (let at = e.offset; at < e.offset + e.length; at += G) out[Math.floor(at / G)] = e.dirty;
  }
  return out;
}

test('set/reset/isDirty/extents agree with a naive model over random ranges', () => {
  const size = 300 * G + 123;
  const bitmap = new DirtyBitmap('m', size, { granularity: G });
  const naive = new Array<boolean>(Math.ceil(size / G)).fill(false);
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let i = 0; i < 2000; i++) {
    const offset = rand(size);
    const length = rand(Math.min(size - offset, 80 * G)) + 1;
    const value = rand(3) !== 0;
    if (value) bitmap.set(offset, length);
    else bitmap.reset(offset, length);
    for (let g = Math.floor(offset / G); g <= Math.floor((offset + length - 1) / G); g++) naive[g] = value;
    if (i % 100 === 0) {
      const probe = rand(size);
      const probeLen = rand(size - probe) + 1;
      let expect = false;
      for (let g = Math.floor(probe / G); g <= Math.floor((probe + probeLen - 1) / G); g++) expect ||= naive[g]!;
      assert.equal(bitmap.isDirty(probe, probeLen), expect);
    }
  }
  assert.deepEqual(model(bitmap), naive);
  const total = [...bitmap.extents()].reduce((n, e) => n + e.length, 0);
  assert.equal(total, size);
});

test('extents are clipped to the queried range and alternate', () => {
  const bitmap = new DirtyBitmap('e', 1 << 20, { granularity: 65536 });
  bitmap.set(65536, 1);
  bitmap.set(5 * 65536, 3 * 65536);
  const got = [...bitmap.extents(1000, 9 * 65536)];
  assert.deepEqual(got, [
    { offset: 1000, length: 65536 - 1000, dirty: false },
    { offset: 65536, length: 65536, dirty: true },
    { offset: 131072, length: 3 * 65536, dirty: false },
    { offset: 5 * 65536, length: 3 * 65536, dirty: true },
    { offset: 8 * 65536, length: 1000 + 9 * 65536 - 8 * 65536, dirty: false },
  ]);
  assert.equal(bitmap.dirtyBytes, 4 * 65536);
});

test('merge ORs bitmaps of different granularity; resize keeps and clips bits', () => {
  const a = new DirtyBitmap('a', 1 << 20, { granularity: 65536 });
  const b = new DirtyBitmap('b', 1 << 20, { granularity: 4096 });
  b.set(4096 * 20, 10);
  a.set(0, 1);
  a.merge(b);
  assert.equal(a.isDirty(65536, 65536), true);
  assert.equal(a.dirtyBytes, 2 * 65536);
  a.resize(65536 + 100);
  assert.equal(a.dirtyBytes, 65536 + 100);
  a.resize(1 << 21);
  assert.equal(a.dirtyBytes, 2 * 65536);
  assert.throws(() => new DirtyBitmap('x', 100, { granularity: 3000 }), { code: 'EBITMAP_INVALID' });
  assert.throws(() => new DirtyBitmap('bad name', 100), { code: 'EBITMAP_INVALID' });
});

test('side file: clean save round-trips; in-use at load means inconsistent', async () => {
  const dir = await scratchDir();
  try {
    const path = join(dir.path, 'b.bitmap');
    const bitmap = new DirtyBitmap('daily', 10 * 2 ** 30, { enabled: false });
    bitmap.set(123 * 65536, 5);
    bitmap.set(9 * 2 ** 30, 2 ** 20);
    await saveBitmap(path, bitmap, { inUse: false });
    const back = await loadBitmap(path);
    assert.equal(back.inconsistent, false);
    assert.equal(back.enabled, false);
    assert.deepEqual([...back.extents()], [...bitmap.extents()]);
    await markInUse(path);
    const crashed = await loadBitmap(path);
    assert.equal(crashed.inconsistent, true);
    assert.throws(() => crashed.assertConsistent('back up'), { code: 'EBITMAP_INCONSISTENT' });
    // A clean save of an inconsistent bitmap keeps it inconsistent.
    await saveBitmap(path, crashed, { inUse: false });
    assert.equal((await loadBitmap(path)).inconsistent, true);
  } finally {
    await dir.cleanup();
  }
});

test('dirty tracker marks writes, zeroes and discards in enabled bitmaps only', async () => {
  const set = new BitmapSet();
  const on = set.add(new DirtyBitmap('on', 1 << 20));
  const off = set.add(new DirtyBitmap('off', 1 << 20, { enabled: false }));
  const dev = new DirtyTrackerDevice(new MemoryDevice(1 << 20), set);
  await dev.write(65536 * 2 + 10, Buffer.alloc(100, 1));
  await dev.writeZeroes(65536 * 5, 65537);
  await dev.discard(65536 * 9, 1);
  const back = Buffer.alloc(100);
  await dev.read(65536 * 2 + 10, back);
  assert.ok(back.every((b) => b === 1));
  assert.deepEqual(
    [...on.extents()].filter((e) => e.dirty).map((e) => [e.offset / 65536, e.length / 65536]),
    [[2, 1], [5, 2], [9, 1]],
  );
  assert.equal(off.dirtyBytes, 0);
});
