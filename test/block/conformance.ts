// One behaviour contract for every BlockDevice (restic's backend test suite): each driver's test
// file calls runBlockDeviceConformance with a factory, and every test compares bytes read back.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BlockDevice, Extent } from '../../src/block/block-device.js';

/** Makes a fresh device of `size` bytes reading as all zeroes. */
export type DeviceFactory = (
  size: number,
  opts?: { readOnly?: boolean },
) => Promise<{ device: BlockDevice; cleanup(): Promise<void> }>;

/** Not a multiple of 512 on purpose: drivers must handle a ragged tail. */
const SIZE = 1024 * 1024 + 123;

/** Deterministic PRNG (mulberry32) so a failure replays. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(random: () => number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (random() * 256) | 0;
  return bytes;
}

async function readAll(device: BlockDevice, offset: number, length: number): Promise<Buffer> {
  const target = Buffer.alloc(length, 0xee);
  await device.read(offset, target);
  return target;
}

/** All extents of [offset, offset+length), looping as callers must; checks the per-call contract. */
export async function allExtents(device: BlockDevice, offset: number, length: number): Promise<Extent[]> {
  const result: Extent[] = [];
  let position = offset;
  const end = offset + length;
  while (position < end) {
    const extents = await device.blockStatus(position, end - position);
    assert.ok(extents.length > 0, `blockStatus(${position}, ${end - position}) returned no extent`);
    for (const extent of extents) {
      assert.equal(extent.offset, position, 'extents must be contiguous and start at the offset asked');
      assert.ok(extent.length > 0, `empty extent at ${extent.offset}`);
      assert.ok(extent.offset + extent.length <= end, `extent ${extent.offset}+${extent.length} past ${end}`);
      position += extent.length;
      result.push(extent);
    }
  }
  return result;
}

async function assertCode(promise: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(promise, (err: { code?: string }) => {
    assert.equal(err.code, code, `${what}: expected ${code}, got ${err.code}`);
    return true;
  });
}

export function runBlockDeviceConformance(name: string, factory: DeviceFactory): void {
  const withDevice = (title: string, fn: (device: BlockDevice) => Promise<void>, opts?: { readOnly?: boolean }): void => {
    test(`${name}: ${title}`, async () => {
      const { device, cleanup } = await factory(SIZE, opts);
      try {
        await fn(device);
      } finally {
        await device.close();
        await cleanup();
      }
    });
  };

  withDevice('reports its size and reads zeroes when fresh', async (device) => {
    assert.equal(device.size, SIZE);
    assert.ok(device.capabilities.maxBlockSize >= 65536);
    assert.ok((await readAll(device, 0, SIZE)).equals(Buffer.alloc(SIZE)));
  });

  withDevice('random writes, zeroes and discards match a model byte for byte', async (device) => {
    const random = prng(0x5eed);
    const model = Buffer.alloc(SIZE);
    const pick = (max: number): [number, number] => {
      const length = 1 + Math.floor(random() * max);
      const offset = Math.floor(random() * (SIZE - length + 1));
      return [offset, length];
    };
    for (let op = 0; op < 300; op++) {
      const kind = random();
      const [offset, length] = pick(random() < 0.8 ? 9000 : 200_000);
      if (kind < 0.5) {
        const data = randomBytes(random, length);
        await device.write(offset, data, { fua: random() < 0.1 });
        data.copy(model, offset);
      } else if (kind < 0.65) {
        await device.writeZeroes(offset, length, { mayTrim: random() < 0.5 });
        model.fill(0, offset, offset + length);
      } else if (kind < 0.72) {
        await device.discard(offset, length);
        // Discarded bytes are unspecified: each must be its old value or zero; adopt what we read.
        const got = await readAll(device, offset, length);
        for (let i = 0; i < length; i++) {
          if (got[i] !== 0 && got[i] !== model[offset + i]) assert.fail(`discarded byte at ${offset + i} is ${got[i]}, neither old ${model[offset + i]} nor 0`);
        }
        got.copy(model, offset);
      } else {
        const got = await readAll(device, offset, length);
        assert.ok(got.equals(model.subarray(offset, offset + length)), `op ${op}: read ${offset}+${length} differs from the model`);
      }
    }
    await device.flush();
    assert.ok((await readAll(device, 0, SIZE)).equals(model), 'whole device differs from the model');
  });

  withDevice('unaligned edges: first byte, last byte, sector boundaries, zero lengths', async (device) => {
    await device.write(0, Buffer.from([0x11]));
    await device.write(SIZE - 1, Buffer.from([0x22]));
    await device.write(511, Buffer.from([1, 2, 3]));
    await device.write(SIZE - 600, Buffer.alloc(599, 0x33));
    await device.write(SIZE, Buffer.alloc(0));
    await device.read(SIZE, Buffer.alloc(0));
    assert.deepEqual([...(await readAll(device, 0, 1))], [0x11]);
    assert.deepEqual([...(await readAll(device, 510, 5))], [0, 1, 2, 3, 0]);
    const tail = await readAll(device, SIZE - 601, 601);
    assert.equal(tail[0], 0);
    assert.ok(tail.subarray(1, 600).equals(Buffer.alloc(599, 0x33)));
    assert.equal(tail[600], 0x22);
    await device.writeZeroes(SIZE - 3, 3);
    assert.deepEqual([...(await readAll(device, SIZE - 4, 4))], [0x33, 0, 0, 0]);
  });

  for (const mayTrim of [false, true]) {
    withDevice(`writeZeroes mayTrim=${mayTrim} zeroes exactly the range`, async (device) => {
      const data = randomBytes(prng(7), 300_000);
      await device.write(1000, data);
      const zeroStart = 1000 + 4097;
      const zeroLength = 200_003;
      await device.writeZeroes(zeroStart, zeroLength, { mayTrim });
      const expected = Buffer.from(data);
      expected.fill(0, zeroStart - 1000, zeroStart - 1000 + zeroLength);
      assert.ok((await readAll(device, 1000, data.length)).equals(expected));
      assert.ok((await readAll(device, 0, 1000)).equals(Buffer.alloc(1000)));
    });
  }

  withDevice('writeZeroes with fastZero succeeds when advertised, else fails ENOTSUP or zeroes', async (device) => {
    await device.write(0, Buffer.alloc(70_000, 9));
    try {
      await device.writeZeroes(10, 65_536, { fastZero: true, fua: true });
    } catch (err) {
      assert.equal(device.capabilities.canFastZero, false, 'fast zero failed although advertised');
      assert.equal((err as { code?: string }).code, 'ENOTSUP');
      return;
    }
    const expected = Buffer.alloc(70_000, 9);
    expected.fill(0, 10, 10 + 65_536);
    assert.ok((await readAll(device, 0, 70_000)).equals(expected));
  });

  withDevice('discard leaves neighbours intact and the range old-or-zero', async (device) => {
    const data = randomBytes(prng(3), 400_000);
    await device.write(0, data);
    await device.discard(65_536 + 17, 131_072);
    const got = await readAll(device, 0, data.length);
    assert.ok(got.subarray(0, 65_553).equals(data.subarray(0, 65_553)));
    assert.ok(got.subarray(65_553 + 131_072).equals(data.subarray(65_553 + 131_072)));
    for (let i = 65_553; i < 65_553 + 131_072; i++) {
      if (got[i] !== 0 && got[i] !== data[i]) assert.fail(`discarded byte ${i} is ${got[i]}`);
    }
  });

  withDevice('blockStatus: contiguous extents inside the range; zero extents read as zero', async (device) => {
    const random = prng(11);
    await device.write(200_000, randomBytes(random, 100_000));
    await device.write(SIZE - 5000, Buffer.alloc(5000, 1));
    await device.writeZeroes(220_000, 70_000, { mayTrim: true });
    await device.write(700_000, Buffer.alloc(10_000)); // written zeroes may report data or zero
    const ranges: Array<[number, number]> = [[0, SIZE], [1, SIZE - 1], [SIZE - 1, 1], [199_999, 3], [250_000, 123_457]];
    for (let i = 0; i < 20; i++) {
      const offset = Math.floor(random() * SIZE);
      ranges.push([offset, 1 + Math.floor(random() * (SIZE - offset))]);
    }
    for (const [offset, length] of ranges) {
      const first = await device.blockStatus(offset, length);
      assert.equal(first[0]?.offset, offset);
      const extents = await allExtents(device, offset, length);
      const content = await readAll(device, offset, length);
      for (const extent of extents) {
        if (extent.zero) {
          const bytes = content.subarray(extent.offset - offset, extent.offset - offset + extent.length);
          assert.ok(bytes.every((b) => b === 0), `extent ${extent.offset}+${extent.length} says zero but holds data`);
        }
      }
    }
  });

  withDevice('out-of-range requests fail with EINVAL, writes past the end with ENOSPC', async (device) => {
    await assertCode(device.read(SIZE - 10, Buffer.alloc(11)), 'EINVAL', 'read past end');
    await assertCode(device.read(-1, Buffer.alloc(1)), 'EINVAL', 'negative read');
    await assertCode(device.read(1.5, Buffer.alloc(1)), 'EINVAL', 'fractional read');
    await assertCode(device.blockStatus(SIZE, 1), 'EINVAL', 'block status past end');
    await assertCode(device.cache(SIZE - 1, 2), 'EINVAL', 'cache past end');
    await assertCode(device.discard(SIZE - 1, 2), 'EINVAL', 'discard past end');
    await assertCode(device.write(SIZE - 1, Buffer.alloc(2)), 'ENOSPC', 'write past end');
    await assertCode(device.writeZeroes(SIZE, 1), 'ENOSPC', 'zeroes past end');
    assert.ok((await readAll(device, SIZE - 10, 10)).equals(Buffer.alloc(10)), 'a refused write must not write');
  });

  withDevice('read-only device refuses writes with EPERM and still reads', async (device) => {
    assert.equal(device.capabilities.readOnly, true);
    await assertCode(device.write(0, Buffer.alloc(1)), 'EPERM', 'write');
    await assertCode(device.writeZeroes(0, 1), 'EPERM', 'write-zeroes');
    await assertCode(device.discard(0, 1), 'EPERM', 'discard');
    assert.ok((await readAll(device, 0, 4096)).equals(Buffer.alloc(4096)));
    assert.ok((await allExtents(device, 0, SIZE)).length > 0);
  }, { readOnly: true });

  withDevice('flush, cache and an aborted signal', async (device) => {
    await device.write(100, Buffer.alloc(100, 5));
    await device.flush();
    await device.cache(0, SIZE);
    assert.ok((await readAll(device, 100, 100)).equals(Buffer.alloc(100, 5)));
    const signal = AbortSignal.abort();
    await assertCode(device.read(0, Buffer.alloc(1), { signal }), 'EABORTED', 'aborted read');
    await assertCode(device.write(0, Buffer.alloc(1, 1), { signal }), 'EABORTED', 'aborted write');
    assert.equal((await readAll(device, 0, 1))[0], 0, 'an aborted write must not write');
  });

  test(`${name}: after close every call fails with ESHUTDOWN; close is idempotent`, async () => {
    const { device, cleanup } = await factory(SIZE);
    try {
      await device.write(0, Buffer.alloc(10, 1));
      await Promise.all([device.close(), device.close()]);
      await device.close();
      await assertCode(device.read(0, Buffer.alloc(1)), 'ESHUTDOWN', 'read');
      await assertCode(device.write(0, Buffer.alloc(1)), 'ESHUTDOWN', 'write');
      await assertCode(device.writeZeroes(0, 1), 'ESHUTDOWN', 'write-zeroes');
      await assertCode(device.discard(0, 1), 'ESHUTDOWN', 'discard');
      await assertCode(device.flush(), 'ESHUTDOWN', 'flush');
      await assertCode(device.cache(0, 1), 'ESHUTDOWN', 'cache');
      await assertCode(device.blockStatus(0, 1), 'ESHUTDOWN', 'block-status');
    } finally {
      await cleanup();
    }
  });

  withDevice('concurrent overlapping writes all complete; each byte comes from a write covering it', async (device) => {
    const random = prng(99);
    const writes: Array<{ offset: number; length: number; pattern: number }> = [];
    for (let i = 0; i < 48; i++) {
      const length = 1 + Math.floor(random() * 150_000);
      writes.push({ offset: Math.floor(random() * (300_000 - length)), length, pattern: i + 1 });
    }
    const readers = Array.from({ length: 8 }, () => readAll(device, Math.floor(random() * 200_000), 100_000));
    await Promise.all([
      ...writes.map((w) => device.write(w.offset, Buffer.alloc(w.length, w.pattern), { fua: w.pattern % 8 === 0 })),
      ...readers,
    ]);
    const got = await readAll(device, 0, 300_000);
    for (let i = 0; i < got.length; i++) {
      const covering = writes.filter((w) => w.offset <= i && i < w.offset + w.length).map((w) => w.pattern);
      const allowed = covering.length === 0 ? [0] : covering;
      if (!allowed.includes(got[i]!)) assert.fail(`byte ${i} is ${got[i]}, not one of the writes covering it (${allowed.join(',')})`);
    }
  });
}
