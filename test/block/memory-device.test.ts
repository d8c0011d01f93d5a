// The conformance suite against the RAM disk, plus what only a memory device promises.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { runBlockDeviceConformance } from './conformance.js';

runBlockDeviceConformance('MemoryDevice', async (size, opts) => ({
  device: new MemoryDevice(size, { readOnly: opts?.readOnly ?? false }),
  cleanup: async () => undefined,
}));

test('MemoryDevice: a huge device costs only what was written; zeroing frees pages', async () => {
  const device = new MemoryDevice(2 ** 40);
  await device.write(2 ** 39, Buffer.alloc(200_000, 1));
  assert.ok(device.allocatedBytes <= 4 * 65_536);
  await device.writeZeroes(2 ** 39 - 65_536, 400_000, { mayTrim: true });
  assert.ok(device.allocatedBytes <= 65_536, `still ${device.allocatedBytes} bytes allocated`);
  await device.close();
});
