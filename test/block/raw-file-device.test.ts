// The conformance suite against sparse raw files, plus what only a file can show: allocation as
// qemu-img sees it, blocks really freed, and both the page-cache (NOWAIT) and the pool read paths.

import assert from 'node:assert/strict';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { RawFileDevice } from '../../src/block/drivers/raw-file-device.js';
import { loadNative } from '../../src/core/native.js';
import { requireTools, runOk, scratchDir } from '../helpers/tools.js';
import { allExtents, prng, runBlockDeviceConformance } from './conformance.js';

runBlockDeviceConformance('RawFileDevice', async (size, opts) => {
  const dir = await scratchDir('fleece-raw-');
  const path = join(dir.path, 'disk.img');
  let device = await RawFileDevice.open(path, { create: size });
  if (opts?.readOnly) {
    await device.close();
    device = await RawFileDevice.open(path, { readOnly: true });
  }
  return { device, cleanup: dir.cleanup };
});

async function withImage(size: number, fn: (device: RawFileDevice, path: string) => Promise<void>): Promise<void> {
  const dir = await scratchDir('fleece-raw-');
  const path = join(dir.path, 'disk.img');
  const device = await RawFileDevice.open(path, { create: size });
  try {
    await fn(device, path);
  } finally {
    await device.close();
    await dir.cleanup();
  }
}

/** Merges neighbouring runs with the same flags so that two reporters' granularity can differ. */
function runs(list: Array<{ offset: number; length: number; data: boolean }>): string[] {
  const merged: Array<{ offset: number; length: number; data: boolean }> = [];
  for (const run of list) {
    const last = merged[merged.length - 1];
    if (last && last.data === run.data && last.offset + last.length === run.offset) last.length += run.length;
    else merged.push({ ...run });
  }
  return merged.map((r) => `${r.offset}+${r.length}:${r.data ? 'data' : 'hole'}`);
}

test('RawFileDevice: blockStatus agrees with qemu-img map on the same sparse file', async () => {
  requireTools('qemu-img');
  await withImage(64 * 1024 * 1024 + 4096, async (device, path) => {
    const random = prng(42);
    for (let i = 0; i < 40; i++) {
      const offset = Math.floor(random() * 1000) * 65_536;
      await device.write(offset, Buffer.alloc(65_536 * (1 + Math.floor(random() * 4)), 0xab).subarray(0, Math.min(262_144, device.size - offset)));
    }
    await device.write(device.size - 4096, Buffer.alloc(4096, 1));
    for (let i = 0; i < 10; i++) await device.discard(Math.floor(random() * 1000) * 65_536, 65_536);
    await device.flush();
    const ours = (await allExtents(device, 0, device.size)).map((e) => ({ offset: e.offset, length: e.length, data: !e.hole }));
    const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', path])) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
    const theirs = map.map((e) => ({ offset: e.start, length: e.length, data: e.data }));
    assert.ok(runs(ours).length > 10, 'the test image should be fragmented');
    assert.deepEqual(runs(ours), runs(theirs));
    for (const e of map) assert.equal(e.zero, !e.data, `qemu-img says ${JSON.stringify(e)}`);
  });
});

test('RawFileDevice: discard and writeZeroes(mayTrim) free blocks; writeZeroes keeps them otherwise', async () => {
  await withImage(32 * 1024 * 1024, async (device, path) => {
    const mib = 1024 * 1024;
    await device.write(0, Buffer.alloc(16 * mib, 7));
    await device.flush();
    const full = (await stat(path)).blocks;
    assert.ok(full * 512 >= 16 * mib, `only ${full} blocks after writing 16 MiB`);
    await device.discard(0, 4 * mib);
    const afterDiscard = (await stat(path)).blocks;
    assert.ok(full - afterDiscard >= (4 * mib) / 512, `discard freed ${full - afterDiscard} blocks`);
    await device.writeZeroes(4 * mib, 4 * mib, { mayTrim: true });
    const afterTrim = (await stat(path)).blocks;
    assert.ok(afterDiscard - afterTrim >= (4 * mib) / 512, `zeroes with mayTrim freed ${afterDiscard - afterTrim} blocks`);
    await device.writeZeroes(8 * mib, 4 * mib, { mayTrim: false });
    assert.ok((await stat(path)).blocks >= afterTrim, 'zeroes without mayTrim must not deallocate');
    const back = Buffer.alloc(16 * mib);
    await device.read(0, back);
    assert.ok(back.subarray(0, 12 * mib).every((b) => b === 0));
    assert.ok(back.subarray(12 * mib).every((b) => b === 7));
    const holes = (await allExtents(device, 0, 8 * mib)).filter((e) => e.hole);
    assert.equal(holes.reduce((n, e) => n + e.length, 0), 8 * mib);
  });
});

test('RawFileDevice: page-cache reads, cold reads and forced pool reads return the same bytes', async () => {
  const native = loadNative();
  await withImage(8 * 1024 * 1024 + 100, async (device, path) => {
    const data = Buffer.alloc(device.size);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    await device.write(0, data);
    await device.flush();
    const probe = openSync(path, 'r');
    try {
      const check = async (label: string): Promise<void> => {
        for (const [offset, length] of [[0, 4096], [12_345, 100_000], [device.size - 5000, 5000], [0, device.size]] as const) {
          // readNow first (read would warm the cache): served at once only when cached.
          const viaNow = Buffer.alloc(length);
          const pending = device.readNow(offset, viaNow);
          // (Reads over 1 MiB always take the pool: their copy would hold the event loop too long.)
          if (label === 'warm' && length <= 2 ** 20) assert.equal(pending, undefined, `${label}: cached data is read at once`);
          if (label === 'pool') assert.ok(pending instanceof Promise, `${label}: the pool path is pending`);
          await pending;
          assert.ok(viaNow.equals(data.subarray(offset, offset + length)), `${label} readNow: ${offset}+${length}`);
          const target = Buffer.alloc(length);
          await device.read(offset, target);
          assert.ok(target.equals(data.subarray(offset, offset + length)), `${label}: ${offset}+${length}`);
        }
      };
      assert.equal(native.preadNoWait(probe, Buffer.alloc(4096), 0, 4096, 0), 4096, 'data should be cached after writing');
      await check('warm');
      native.dropCache(probe, 0, 0);
      assert.equal(native.preadNoWait(probe, Buffer.alloc(4096), 0, 4096, 4096 * 100), -1, 'dropCache should evict');
      await check('cold');
      device.io.noWait = false;
      native.dropCache(probe, 0, 0);
      await check('pool');
      device.io.noWait = true;
      assert.throws(() => device.readNow(device.size - 10, Buffer.alloc(20)), (err: { code?: string }) => err.code === 'ERANGE' || err.code === 'EINVAL');
      await device.cache(0, device.size);
    } finally {
      closeSync(probe);
    }
  });
});

test('RawFileDevice: open errors, read-only files, existing images', async () => {
  const dir = await scratchDir('fleece-raw-');
  try {
    const path = join(dir.path, 'disk.img');
    await assert.rejects(RawFileDevice.open(path), (err: { code?: string; message: string }) => err.code === 'ENOENT' && err.message.includes(path));
    writeFileSync(path, Buffer.alloc(1000, 3));
    await assert.rejects(RawFileDevice.open(path, { create: 4096 }), (err: { code?: string }) => err.code === 'EEXIST');
    await assert.rejects(RawFileDevice.open(path, { create: -1 }), (err: { code?: string }) => err.code === 'EUSAGE');
    await assert.rejects(RawFileDevice.open(dir.path), (err: { code?: string }) => typeof err.code === 'string');
    const device = await RawFileDevice.open(path, { readOnly: true });
    assert.equal(device.size, 1000);
    const target = Buffer.alloc(1000);
    await device.read(0, target);
    assert.ok(target.equals(Buffer.alloc(1000, 3)));
    assert.deepEqual(await device.blockStatus(0, 1000), [{ offset: 0, length: 1000, hole: false, zero: false }]);
    await device.close();
  } finally {
    await dir.cleanup();
  }
});

test('native addon: validates arguments and reports errno names', () => {
  const native = loadNative();
  const buffer = Buffer.alloc(16);
  assert.throws(() => native.preadNoWait(0, buffer, 0, 17, 0), RangeError);
  assert.throws(() => native.preadNoWait(0, buffer, 17, 0, 0), RangeError);
  assert.throws(() => native.preadNoWait(0, 'x' as unknown as Buffer, 0, 1, 0), TypeError);
  assert.throws(() => native.seekData(-1, 0), RangeError);
  assert.throws(() => native.seekData(0, 2 ** 53), RangeError);
  assert.throws(() => native.punchHole(0, 1.5, 1), RangeError);
  assert.throws(() => (native.seekHole as unknown as (fd: number) => number)(0), TypeError);
  const fd = openSync('/dev/null', 'r');
  closeSync(fd);
  assert.throws(() => native.punchHole(fd, 0, 1), (err: { code?: string }) => err.code === 'EBADF');
  const dev = openSync('/dev/null', 'r+');
  try {
    assert.throws(() => native.zeroRange(dev, 0, 4096), (err: { code?: string }) => typeof err.code === 'string' && err.code.startsWith('E'));
  } finally {
    closeSync(dev);
  }
});

test('RawFileDevice: close waits for reads and writes in flight, then refuses new ones', async () => {
  await withImage(4 * 1024 * 1024, async (device) => {
    device.io.noWait = false; // force the pool so the requests are really pending during close
    const pending = Array.from({ length: 32 }, (_, i) => device.write(i * 65_536, Buffer.alloc(65_536, i + 1)));
    const reads = Array.from({ length: 8 }, (_, i) => device.read(i * 65_536, Buffer.alloc(65_536)));
    const closed = device.close();
    await Promise.all([...pending, ...reads]);
    await closed;
    await assert.rejects(device.read(0, Buffer.alloc(1)), (err: { code?: string }) => err.code === 'ESHUTDOWN');
  });
});
