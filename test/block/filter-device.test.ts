// A filter that overrides nothing must be invisible: the conformance suite passes through it,
// and every call reaches the child with the same arguments.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { FilterDevice } from '../../src/block/filters/filter-device.js';
import { runBlockDeviceConformance } from './conformance.js';

class PassThrough extends FilterDevice {}

runBlockDeviceConformance('FilterDevice pass-through', async (size, opts) => ({
  device: new PassThrough(new MemoryDevice(size, { readOnly: opts?.readOnly ?? false })),
  cleanup: async () => undefined,
}));

test('FilterDevice forwards every method and its arguments to the child', async () => {
  const child = new MemoryDevice(1 << 20);
  const calls: string[] = [];
  const spy = new Proxy(child, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== 'function') {
        calls.push(String(key));
        return value;
      }
      return (...args: unknown[]) => {
        calls.push(`${String(key)}(${args.map((a) => (a instanceof Uint8Array ? `bytes${a.length}` : JSON.stringify(a))).join(',')})`);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as BlockDevice;
  const filter = new PassThrough(spy);
  const fua = { fua: true };
  assert.equal(filter.size, 1 << 20);
  assert.equal(filter.capabilities, child.capabilities);
  await filter.write(4096, Buffer.alloc(10, 7), fua);
  const back = Buffer.alloc(10);
  await filter.read(4096, back);
  assert.deepEqual(back, Buffer.alloc(10, 7));
  await filter.writeZeroes(0, 512, { mayTrim: true });
  await filter.discard(8192, 512, fua);
  await filter.flush({});
  await filter.cache(0, 100);
  const extents = await filter.blockStatus(0, 1 << 20);
  assert.deepEqual(extents, await child.blockStatus(0, 1 << 20));
  await filter.close();
  assert.deepEqual(calls, [
    'size',
    'capabilities',
    'write(4096,bytes10,{"fua":true})',
    'read(4096,bytes10,)',
    'writeZeroes(0,512,{"mayTrim":true})',
    'discard(8192,512,{"fua":true})',
    'flush({})',
    'cache(0,100,)',
    'blockStatus(0,1048576,)',
    'close()',
  ]);
});
