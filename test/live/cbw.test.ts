// Copy-before-write and snapshot access against memory and raw-file devices: point-in-time
// content under concurrent guest writes, RAM → spill → break/wait policies, bitmap-limited
// protection, read-once, copy-at-most-once, write ordering, release.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { RawFileDevice } from '../../src/block/drivers/raw-file-device.js';
import { DirtyBitmap } from '../../src/block/bitmap/dirty-bitmap.js';
import { CopyBeforeWriteDevice } from '../../src/block/filters/copy-before-write.js';
import { LOCATION_LIVE, LOCATION_NONE, LOCATION_RAM, LOCATION_SPILL, SnapshotAccessDevice } from '../../src/block/filters/snapshot-access.js';
import { scratchDir } from '../helpers/tools.js';

const C = 64 * 1024;
const SIZE = 64 * C + 5000; // a partial last cluster

/** A device whose every call yields for a random short while, to interleave requests. */
function jittery(child: BlockDevice): BlockDevice {
  const pause = () => sleep(Math.floor(Math.random() * 3));
  return new Proxy(child, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'close') return (value as () => Promise<void>).bind(target);
      return async (...args: unknown[]) => {
        await pause();
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        await pause();
        return result;
      };
    },
  });
}

async function fillRandom(dev: BlockDevice): Promise<Buffer> {
  const image = Buffer.alloc(dev.size);
  randomFillSync(image);
  await dev.write(0, image);
  return image;
}

async function readAll(dev: BlockDevice): Promise<Buffer> {
  const out = Buffer.alloc(dev.size);
  await dev.read(0, out);
  return out;
}

/** Random guest writes, zeroes and discards while a reader copies the snapshot out in pieces. */
async function writeWhileReading(cbw: CopyBeforeWriteDevice, snap: SnapshotAccessDevice, ops: number): Promise<{ pulled: Buffer; errors: unknown[] }> {
  const pulled = Buffer.alloc(snap.size);
  const errors: unknown[] = [];
  const writer = (async () => {
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < ops; i++) {
      const offset = Math.floor(Math.random() * (cbw.size - 1));
      const length = Math.min(1 + Math.floor(Math.random() * 3 * C), cbw.size - offset);
      const kind = i % 5;
      inflight.push(
        kind === 3 ? cbw.writeZeroes(offset, length) : kind === 4 ? cbw.discard(offset, length) : cbw.write(offset, randomFillSync(Buffer.alloc(length))),
      );
      if (inflight.length >= 16) await inflight.shift();
    }
    await Promise.all(inflight);
  })();
  const reader = (async () => {
    const pieces: Promise<void>[] = [];
    for (let at = 0; at < snap.size; at += 37_000) {
      const len = Math.min(37_000, snap.size - at);
      pieces.push(snap.read(at, pulled.subarray(at, at + len)).catch((err: unknown) => void errors.push(err)));
      if (pieces.length >= 4) await pieces.shift();
    }
    await Promise.all(pieces);
  })();
  await Promise.all([writer, reader]);
  return { pulled, errors };
}

for (const kind of ['memory', 'raw-file'] as const) {
  test(`${kind}: snapshot reads the point-in-time content while guest writes race with it`, async () => {
    const dir = await scratchDir();
    try {
      const base = kind === 'memory' ? new MemoryDevice(SIZE) : await RawFileDevice.open(join(dir.path, 'd.img'), { create: SIZE });
      const cbw = new CopyBeforeWriteDevice(jittery(base));
      const before = await fillRandom(cbw);
      const s = await cbw.createSnapshot({ name: 's', ramBytes: 8 * C, spillDir: dir.path, spillMaxBytes: 1 << 30 });
      const snap = new SnapshotAccessDevice(s, jittery(base));
      const { pulled, errors } = await writeWhileReading(cbw, snap, 400);
      assert.deepEqual(errors, []);
      assert.ok(pulled.equals(before), 'pulled snapshot equals the disk at snapshot time');
      assert.ok((await readAll(snap)).equals(before), 'second full read too');
      assert.ok(s.stats.cache.spillBytes > 0, 'the tiny RAM cache spilled');
      const spillFiles = (await readdir(dir.path)).filter((f) => f.startsWith('fleece-spill-'));
      assert.equal(spillFiles.length, 1);
      const copies = cbw.copies;
      assert.ok(copies > 0 && copies <= Math.ceil(SIZE / C), `each cluster copied at most once (${copies})`);
      await cbw.releaseSnapshot('s');
      assert.deepEqual((await readdir(dir.path)).filter((f) => f.startsWith('fleece-spill-')), []);
      await cbw.write(0, Buffer.alloc(SIZE, 7));
      assert.equal(cbw.copies, copies, 'no copy-before-write after release');
      await assert.rejects(snap.read(0, Buffer.alloc(10)), { code: 'ESHUTDOWN' });
      await cbw.close();
    } finally {
      await dir.cleanup();
    }
  });
}

test('caches too small: the snapshot breaks, its reads fail with EIO, guest writes never fail', async () => {
  const base = new MemoryDevice(SIZE);
  const cbw = new CopyBeforeWriteDevice(base);
  await fillRandom(cbw);
  const s = await cbw.createSnapshot({ name: 's', ramBytes: 2 * C });
  const snap = new SnapshotAccessDevice(s, base);
  const data = Buffer.alloc(SIZE, 9);
  await cbw.write(0, data);
  assert.ok((await readAll(base)).equals(data), 'guest data landed');
  assert.match(s.broken ?? '', /cache full/);
  await assert.rejects(snap.read(0, Buffer.alloc(C)), { code: 'EIO' });
  assert.deepEqual(snap.location(0, C), [{ length: C, flags: LOCATION_NONE }]);
});

test('wait policy: a guest write waits for cache space and resumes once the reader drops clusters', async () => {
  const base = new MemoryDevice(SIZE);
  const cbw = new CopyBeforeWriteDevice(base);
  const before = await fillRandom(cbw);
  const s = await cbw.createSnapshot({ name: 's', ramBytes: 2 * C, onFull: 'wait' });
  const snap = new SnapshotAccessDevice(s, base, { readOnce: true });
  await cbw.write(0, Buffer.alloc(2 * C, 1));
  let done = false;
  const blocked = cbw.write(5 * C, Buffer.alloc(10, 2)).then(() => (done = true));
  await sleep(20);
  assert.equal(done, false, 'third cluster waits: the cache holds two');
  const first = Buffer.alloc(C);
  await snap.read(0, first); // read-once frees cluster 0
  assert.ok(first.equals(before.subarray(0, C)));
  await blocked;
  assert.equal(s.broken, undefined);
  await assert.rejects(snap.read(0, Buffer.alloc(1)), { code: 'EIO' }, 'dropped after read-once');
  const fifth = Buffer.alloc(C);
  await snap.read(5 * C, fifth);
  assert.ok(fifth.equals(before.subarray(5 * C, 6 * C)));
});

test('with a bitmap only dirty clusters are protected and readable', async () => {
  const base = new MemoryDevice(SIZE);
  const cbw = new CopyBeforeWriteDevice(base);
  const before = await fillRandom(cbw);
  const bitmap = new DirtyBitmap('inc', SIZE);
  bitmap.set(3 * C, 2 * C);
  const s = await cbw.createSnapshot({ name: 's', bitmap });
  const snap = new SnapshotAccessDevice(s, base);
  await cbw.write(0, Buffer.alloc(SIZE, 5));
  assert.equal(cbw.copies, 2);
  const got = Buffer.alloc(2 * C);
  await snap.read(3 * C, got);
  assert.ok(got.equals(before.subarray(3 * C, 5 * C)));
  await assert.rejects(snap.read(0, Buffer.alloc(1)), { code: 'EIO' });
  assert.deepEqual(snap.location(2 * C, 4 * C), [
    { length: C, flags: LOCATION_NONE },
    { length: 2 * C, flags: LOCATION_RAM },
    { length: C, flags: LOCATION_NONE },
  ]);
});

test('a cluster is copied once under concurrent writes; overlapping writes keep their order', async () => {
  const base = new MemoryDevice(SIZE);
  const cbw = new CopyBeforeWriteDevice(jittery(base));
  const before = await fillRandom(cbw);
  const s = await cbw.createSnapshot({ name: 's' });
  const snap = new SnapshotAccessDevice(s, base);
  const writes: Promise<void>[] = [];
  for (let i = 1; i <= 50; i++) writes.push(cbw.write(C + (i % 7) * 100, Buffer.alloc(1000, i)));
  await Promise.all(writes);
  assert.equal(cbw.copies, 1);
  const live = Buffer.alloc(1000);
  await base.read(C + 100 * (50 % 7), live);
  assert.ok(live.every((b) => b === 50), 'the last write wins');
  const old = Buffer.alloc(C);
  await snap.read(C, old);
  assert.ok(old.equals(before.subarray(C, 2 * C)));
});

test('location context: live, RAM and spill clusters', async () => {
  const dir = await scratchDir();
  try {
    const base = new MemoryDevice(SIZE);
    const cbw = new CopyBeforeWriteDevice(base);
    await fillRandom(cbw);
    const s = await cbw.createSnapshot({ name: 's', ramBytes: C, spillDir: dir.path, spillMaxBytes: 4 * C });
    const snap = new SnapshotAccessDevice(s, base);
    await cbw.write(2 * C, Buffer.alloc(2 * C, 1));
    assert.deepEqual(snap.location(C, 4 * C), [
      { length: C, flags: LOCATION_LIVE },
      { length: C, flags: LOCATION_RAM },
      { length: C, flags: LOCATION_SPILL },
      { length: C, flags: LOCATION_LIVE },
    ]);
    await snap.drop(3 * C, C);
    assert.equal(s.stats.cache.spillBytes, 0, 'drop frees spill space');
    await cbw.close();
  } finally {
    await dir.cleanup();
  }
});

test('a snapshot taken while writes are in flight falls between two requests of every writer', async () => {
  const B = 4096;
  const blocks = 64;
  const base = new MemoryDevice(blocks * B);
  const cbw = new CopyBeforeWriteDevice(jittery(base));
  // One sequential writer per block, writing an increasing value over the whole block.
  const ackedBeforeCall = new Array<number>(blocks).fill(0);
  const issuedAfterReturn = new Array<number>(blocks).fill(Infinity);
  let phase: 'before' | 'during' | 'after' = 'before';
  let stop = false;
  const writers = Array.from({ length: blocks }, async (_, block) => {
    for (let value = 1; !stop; value++) {
      if (phase === 'after' && issuedAfterReturn[block] === Infinity) issuedAfterReturn[block] = value;
      await cbw.write(block * B, Buffer.alloc(B, value % 256));
      if (phase === 'before') ackedBeforeCall[block] = value;
      if (value > 200) break;
    }
  });
  await sleep(15);
  phase = 'during';
  const s = await cbw.createSnapshot({ name: 's', clusterSize: 64 * 1024 });
  phase = 'after';
  await sleep(15);
  stop = true;
  await Promise.all(writers);
  const image = await readAll(new SnapshotAccessDevice(s, base));
  for (let block = 0; block < blocks; block++) {
    const bytes = image.subarray(block * B, (block + 1) * B);
    assert.ok(bytes.every((b) => b === bytes[0]), `block ${block} is not torn`);
    const value = bytes[0]!;
    assert.ok(value >= ackedBeforeCall[block]! % 256, `block ${block}: ${value} misses a write acknowledged before the snapshot (${ackedBeforeCall[block]})`);
    if (issuedAfterReturn[block] !== Infinity) assert.ok(value < issuedAfterReturn[block]!, `block ${block}: ${value} shows a write issued after the snapshot`);
  }
});

test('snapshot block status: live ranges report the disk, copied ones are data even after a guest discard', async () => {
  const base = new MemoryDevice(SIZE);
  const cbw = new CopyBeforeWriteDevice(base);
  await cbw.write(4 * C, Buffer.alloc(2 * C, 3));
  const s = await cbw.createSnapshot({ name: 's' });
  const snap = new SnapshotAccessDevice(s, base);
  await cbw.discard(4 * C, 2 * C);
  await cbw.write(8 * C, Buffer.alloc(10, 1));
  const extents = [];
  for (let at = 0; at < 10 * C; ) {
    const [e] = await snap.blockStatus(at, 10 * C - at);
    extents.push([e!.offset / C, e!.length / C, e!.hole]);
    at += e!.length;
  }
  assert.deepEqual(extents, [[0, 4, true], [4, 2, false], [6, 2, true], [8, 1, false], [9, 1, true]]);
});
