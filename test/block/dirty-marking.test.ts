// The guest write path of a live disk: which bitmaps a write marks as bitmaps are enabled,
// disabled, removed and tracked; failed writes still mark; word-boundary ranges; and a failed
// write through copy-before-write never blocks the writes after it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BitmapSet } from '../../src/block/bitmap/bitmap-set.js';
import { DirtyBitmap } from '../../src/block/bitmap/dirty-bitmap.js';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { CopyBeforeWriteDevice } from '../../src/block/filters/copy-before-write.js';
import { DirtyTrackerDevice } from '../../src/block/filters/dirty-tracker.js';
import { FilterDevice } from '../../src/block/filters/filter-device.js';

const G = 65536;

function dirtyGranules(bitmap: DirtyBitmap): number[] {
  const out: number[] = [];
  for (const e of bitmap.extents()) if (e.dirty) for (let at = e.offset; at < e.offset + e.length; at += bitmap.granularity) out.push(at / bitmap.granularity);
  return out;
}

/** A child whose writes fail: `mode` 'reject' returns a rejected promise, 'throw' throws at once. */
class Failing extends FilterDevice {
  mode: 'ok' | 'reject' | 'throw' = 'ok';
  override write(offset: number, data: Uint8Array): Promise<void> {
    if (this.mode === 'throw') throw new Error(`boom at ${offset}`);
    if (this.mode === 'reject') return Promise.reject(new Error(`boom at ${offset}`));
    return this.child.write(offset, data);
  }
}

test('writes mark exactly the bitmaps enabled at the time, following enable, disable, remove and track', async () => {
  const set = new BitmapSet();
  const a = set.add(new DirtyBitmap('a', 64 * G));
  const b = set.add(new DirtyBitmap('b', 64 * G, { enabled: false }));
  const bad = set.add(new DirtyBitmap('bad', 64 * G, { inconsistent: true }));
  const hidden = new DirtyBitmap('since', 64 * G);
  const dev = new DirtyTrackerDevice(new MemoryDevice(64 * G), set);
  const one = Buffer.alloc(10, 1);
  await dev.write(1 * G, one);
  b.enabled = true;
  await dev.write(2 * G, one);
  a.enabled = false;
  await dev.write(3 * G, one);
  set.track(hidden);
  a.enabled = true;
  await dev.write(4 * G, one);
  set.remove('b');
  await dev.write(5 * G, one);
  set.untrack(hidden);
  await dev.write(6 * G, one);
  set.add(b);
  await dev.writeZeroes(7 * G, 1);
  await dev.discard(8 * G, 1);
  assert.deepEqual(dirtyGranules(a), [1, 2, 4, 5, 6, 7, 8]);
  assert.deepEqual(dirtyGranules(b), [2, 3, 4, 7, 8]);
  assert.deepEqual(dirtyGranules(hidden), [4, 5]);
  assert.deepEqual(dirtyGranules(bad), []);
  // A removed bitmap is no longer watched: toggling it changes nothing in the set.
  const c = set.remove('a');
  c.enabled = false;
  c.enabled = true;
  await dev.write(9 * G, one);
  assert.deepEqual(dirtyGranules(c), [1, 2, 4, 5, 6, 7, 8]);
});

test('a failed write still marks its range and the error reaches the caller', async () => {
  const set = new BitmapSet();
  const bitmap = set.add(new DirtyBitmap('a', 16 * G));
  const child = new Failing(new MemoryDevice(16 * G));
  const dev = new DirtyTrackerDevice(child, set);
  child.mode = 'reject';
  await assert.rejects(dev.write(3 * G, Buffer.alloc(1)), /boom at 196608/);
  child.mode = 'throw';
  await assert.rejects(dev.write(5 * G, Buffer.alloc(1)), /boom at 327680/);
  assert.deepEqual(dirtyGranules(bitmap), [3, 5]);
});

test('set marks whole words and ragged ends exactly', () => {
  const g = 4096;
  const bitmap = new DirtyBitmap('w', 1000 * g + 5, { granularity: g });
  const ranges: [number, number][] = [[0, 32], [40, 64], [64, 65], [95, 97], [100, 229], [300, 301], [999, 1001]];
  const expect: number[] = [];
  for (const [first, end] of ranges) {
    bitmap.set(first * g + 1, (end - first) * g - 2 + (end === 1001 ? 0 : 1));
    for (let i = first; i < Math.min(end, 1001); i++) expect.push(i);
  }
  assert.deepEqual(dirtyGranules(bitmap), expect);
  const whole = new DirtyBitmap('all', 2 ** 34, { granularity: g });
  whole.set(0, 2 ** 34);
  assert.equal(whole.dirtyBytes, 2 ** 34);
  whole.reset(g, 2 ** 34 - 2 * g);
  assert.deepEqual(dirtyGranules(whole), [0, 2 ** 22 - 1]);
});

test('copy-before-write: a failed guest write releases its range, later overlapping writes proceed', async () => {
  const child = new Failing(new MemoryDevice(16 * G));
  const dev: BlockDevice = new CopyBeforeWriteDevice(child);
  for (const mode of ['reject', 'throw'] as const) {
    child.mode = mode;
    await assert.rejects(dev.write(G, Buffer.alloc(G, 9)), /boom/);
  }
  child.mode = 'ok';
  const done = await Promise.race([dev.write(G, Buffer.alloc(G, 7)).then(() => 'written'), new Promise((r) => setTimeout(() => r('stuck'), 2000).unref())]);
  assert.equal(done, 'written');
  const back = Buffer.alloc(G);
  await dev.read(G, back);
  assert.ok(back.every((x) => x === 7));
});
