// QEMU's tests/qemu-iotests/tests/image-fleecing workflow against the daemon: patterns written
// before the snapshot, overwrites after it (full, partial at either edge, adjacent), and reads of
// the snapshot export with `qemu-io -r -f raw … read -P` that must still see the old bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTools, run, runOk } from '../helpers/tools.js';
import { startDaemon, withState, type DaemonHandle } from './daemon-harness.js';

const patterns = [['0x5d', '0', '64k'], ['0xd5', '1M', '64k'], ['0xdc', '32M', '64k'], ['0xcd', '0x3ff0000', '64k']];
const overwrite = [['0xab', '0', '64k'], ['0xad', '0x00f8000', '64k'], ['0x1d', '0x2008000', '64k'], ['0xea', '0x3fe0000', '64k']];
const zeroes = [['0', '0x00f8000', '32k'], ['0', '0x2010000', '32k'], ['0', '0x3fe0000', '64k']];
const remainder = [['0xd5', '0x108000', '32k'], ['0xdc', '32M', '32k'], ['0xcd', '0x3ff0000', '64k']];

async function qemuIo(uri: string, cmd: string, readOnly: boolean): Promise<number> {
  const result = await run('qemu-io', [...(readOnly ? ['-r'] : []), '-f', 'raw', '-c', cmd, uri]);
  // qemu-io reports a failed pattern check on stdout and still exits 0 in some versions.
  return result.code !== 0 || /Pattern verification failed|error|failed/i.test(result.stdout + result.stderr) ? 1 : 0;
}

async function setup(d: DaemonHandle, bitmap: boolean): Promise<void> {
  await d.cli('disk', 'create', 'base', '--size', '64M');
  if (bitmap) await d.cli('bitmap', 'add', 'base', 'bitmap0');
  for (const [p, off, len] of patterns) assert.equal(await qemuIo(d.uri('base'), `write -P${p} ${off} ${len}`, false), 0);
}

test('image-fleecing patterns: the snapshot keeps the old bytes through full and partial overwrites', async () => {
  requireTools('qemu-io', 'nbdinfo');
  await withState(async (state) => {
    const d = await startDaemon(state);
    try {
      await setup(d, false);
      await d.cli('snapshot', 'create', 'base', '--name', 'fl');
      const snap = d.uri('base@fl');
      for (const [p, off, len] of [...patterns, ...zeroes]) assert.equal(await qemuIo(snap, `read -P${p} ${off} ${len}`, true), 0, `sanity ${p} ${off}`);
      for (const [p, off, len] of overwrite) assert.equal(await qemuIo(d.uri('base'), `write -P${p} ${off} ${len}`, false), 0);
      for (const [p, off, len] of [...patterns, ...zeroes]) assert.equal(await qemuIo(snap, `read -P${p} ${off} ${len}`, true), 0, `after COW ${p} ${off}`);
      // Block status says which clusters now come from the RAM cache (flag 1); the rest are live (0).
      const map = await runOk('nbdinfo', ['--map=fleece:cache-location', snap]);
      const ram = map.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number)).filter((f) => f[2] === 1).map((f) => [f[0], f[0]! + f[1]!]);
      assert.deepEqual(ram, [[0, 0x10000], [0xf0000, 0x110000], [0x2000000, 0x2020000], [0x3fe0000, 0x3ff0000]]);
      // The check itself must be able to fail: the live disk has the new bytes.
      assert.notEqual(await qemuIo(snap, 'read -P0xab 0 64k', true), 0);
      await d.cli('snapshot', 'release', 'base@fl');
      for (const [p, off, len] of [...overwrite, ...remainder]) assert.equal(await qemuIo(d.uri('base'), `read -P${p} ${off} ${len}`, true), 0, `confirm ${p} ${off}`);
    } finally {
      await d.stop();
    }
  });
});

test('image-fleecing with a bitmap: dirty clusters keep old bytes, clean ones are not readable', async () => {
  requireTools('qemu-io');
  await withState(async (state) => {
    const d = await startDaemon(state);
    try {
      await setup(d, true);
      await d.cli('snapshot', 'create', 'base', '--name', 'fl', '--bitmap', 'bitmap0');
      const snap = d.uri('base@fl');
      for (const [p, off, len] of overwrite) assert.equal(await qemuIo(d.uri('base'), `write -P${p} ${off} ${len}`, false), 0);
      for (const [p, off, len] of patterns) assert.equal(await qemuIo(snap, `read -P${p} ${off} ${len}`, true), 0, `after COW ${p} ${off}`);
      // 0x3fe0000 was never written before the snapshot: not in the bitmap, so not part of the view.
      assert.notEqual(await qemuIo(snap, 'read 0x3fe0000 64k', true), 0);
      const stats = await d.api<{ disks: { cbwCopies: number }[] }>('/stats');
      // Overwrites touch clusters 0, 0xf0000, 1M, 32M, 32M+64K, 0x3fe0000: only 0, 1M and 32M are dirty.
      assert.equal(stats.disks[0]!.cbwCopies, 3);
    } finally {
      await d.stop();
    }
  });
});
