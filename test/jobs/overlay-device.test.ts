// The writable overlay of instant restore: the BlockDevice conformance suite, then a base with
// data under random writes (the view matches a model, the base never changes) and fill()
// making the overlay alone equal to that view.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { OverlayDevice } from '../../src/jobs/instant-restore/overlay-device.js';
import { prng, runBlockDeviceConformance } from '../block/conformance.js';

runBlockDeviceConformance('OverlayDevice', async (size, opts) => ({
  device: new OverlayDevice(new MemoryDevice(size, { readOnly: true }), new MemoryDevice(size), { granularity: 4096, readOnly: opts?.readOnly ?? false }),
  cleanup: async () => undefined,
}));

test('OverlayDevice: writes over a base with data match a model; the base is untouched; fill completes the overlay', async () => {
  const size = 4 * 1024 * 1024 + 333;
  const random = prng(77);
  const original = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1 + Math.floor(random() * 50)) original[i] = (random() * 256) | 0;
  original.fill(0, 1 << 20, 2 << 20); // a zero region fill() only marks
  const base = new MemoryDevice(size);
  await base.write(0, original);
  const overlayStore = new MemoryDevice(size);
  const device = new OverlayDevice(base, overlayStore, { granularity: 65536 });
  const model = Buffer.from(original);
  const ops: Promise<void>[] = [];
  for (let i = 0; i < 150; i++) {
    // Ten at a time, each in its own byte stripe: no two in flight overlap, but they share blocks.
    const stripe = Math.floor(size / 10);
    const length = 1 + Math.floor(random() * 100_000);
    const offset = (i % 10) * stripe + Math.floor(random() * (stripe - length));
    if (random() < 0.8) {
      const data = Buffer.alloc(length, i + 1);
      data.copy(model, offset);
      ops.push(device.write(offset, data));
    } else {
      model.fill(0, offset, offset + length);
      ops.push(device.writeZeroes(offset, length));
    }
    if (i % 10 === 9) await Promise.all(ops.splice(0)); 
  }
  await Promise.all(ops);
  const view = Buffer.alloc(size);
  await device.read(0, view);
  assert.ok(view.equals(model), 'the overlay view differs from the model');
  const baseNow = Buffer.alloc(size);
  await base.read(0, baseNow);
  assert.ok(baseNow.equals(original), 'the base was written');
  assert.ok(device.progress.done < device.progress.total);

  let reports = 0;
  await device.fill({ onProgress: () => void reports++ });
  assert.equal(device.progress.done, device.progress.total);
  assert.ok(reports > 0);
  const alone = Buffer.alloc(size);
  await overlayStore.read(0, alone);
  assert.ok(alone.equals(model), 'after fill the overlay alone is the disk');
  await device.close();
});
