// An export whose metadata contexts come from a function (a disk whose bitmaps come and go):
// every handshake sees the list of that moment, and a connection keeps the contexts it selected.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { NbdDevice } from '../../src/block/drivers/nbd-device.js';
import type { MetaContextProvider } from '../../src/nbd/index.js';
import { requireTools, runOk } from '../helpers/tools.js';
import { startTestServer } from './helpers.js';

/** A context reporting `flags` over the whole range. */
function context(name: string, flags: number): MetaContextProvider {
  return { name, blockStatus: async (_offset, length) => [{ length, flags }] };
}

async function listed(uri: string): Promise<string[]> {
  const info = JSON.parse(await runOk('nbdinfo', ['--json', uri])) as { exports: { contexts?: string[] }[] };
  return info.exports[0]?.contexts ?? [];
}

test('contexts from a function follow changes; a connection keeps what it selected', async () => {
  requireTools('nbdinfo');
  let current: MetaContextProvider[] = [context('qemu:dirty-bitmap:a', 1)];
  let asked = 0;
  const srv = await startTestServer([
    {
      name: 'disk',
      device: new MemoryDevice(1 << 20),
      metaContexts: () => {
        asked++;
        return current;
      },
    },
  ]);
  try {
    assert.deepEqual(await listed(srv.uri()), ['base:allocation', 'qemu:dirty-bitmap:a']);
    current = [...current, context('qemu:dirty-bitmap:b', 1)];
    assert.deepEqual(await listed(srv.uri()), ['base:allocation', 'qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:b']);
    const before = asked;
    const device = await NbdDevice.open(srv.uri(), { metaContexts: ['qemu:dirty-bitmap:b'] });
    try {
      assert.ok(asked > before, 'the function is asked on each handshake');
      current = [context('qemu:dirty-bitmap:a', 1)];
      assert.deepEqual(await listed(srv.uri()), ['base:allocation', 'qemu:dirty-bitmap:a']);
      // Removed from the list since, but still answered on the connection that selected it.
      assert.deepEqual(await device.contextStatus('qemu:dirty-bitmap:b', 0, 1 << 20), [{ offset: 0, length: 1 << 20, flags: 1 }]);
      const extents = await device.blockStatus(0, 1 << 20);
      assert.equal(extents[0]?.hole, true);
    } finally {
      await device.close();
    }
    // A fresh connection cannot select a context that is gone.
    const late = await NbdDevice.open(srv.uri(), { metaContexts: ['qemu:dirty-bitmap:b'] });
    try {
      await assert.rejects(late.contextStatus('qemu:dirty-bitmap:b', 0, 4096), /was not negotiated/);
    } finally {
      await late.close();
    }
  } finally {
    await srv.stop();
  }
});
