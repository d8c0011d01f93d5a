// QEMU image fleecing driven over QMP (qemu-storage-daemon): copy-before-write + snapshot-access
// exported over NBD while a writer keeps writing through the live node. A full backup, then one
// incremental from the dirty bitmap started in the same transaction as the previous point in time.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Qmp } from '../helpers/qmp.js';
import { requireTools, run, runOk, scratchDir } from '../helpers/tools.js';
import { fleece, startChild, waitForSocket, type Child } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GRANULARITY = 64 * KiB;

/** qemu-io commands of a writer: `[pattern, offset, length]` writes with a short pause between. */
function writerCommands(writes: readonly [number, number, number][]): string[] {
  return writes.flatMap(([p, offset, length]) => ['-c', `write -P ${p} ${offset} ${length}`, '-c', 'sleep 30']);
}

/** Bytes a dirty bitmap of GRANULARITY marks after `writes`. */
function dirtyBytes(writes: readonly [number, number, number][]): number {
  const granules = new Set<number>();
  for (const [, offset, length] of writes) {
    for (let g = Math.floor(offset / GRANULARITY); g < Math.ceil((offset + length) / GRANULARITY); g++) granules.add(g);
  }
  return granules.size * GRANULARITY;
}

// Round 1's writer lands after the first point in time: since-1 records exactly these.
const writes1: [number, number, number][] = [
  ...Array.from({ length: 16 }, (_, k): [number, number, number] => [0xa0 + k, k * 2 * MiB, 128 * KiB]),
  [0xee, 29 * MiB + 1000, 3000],
];
// Round 2's writer: inside since-1 (copied before write), outside it (not needed by the backup), across both.
const writes2: [number, number, number][] = [
  [0xb0, 0, 64 * KiB],
  [0xb1, 1 * MiB, 64 * KiB],
  [0xb2, 4 * MiB, 256 * KiB],
  [0xb3, 29 * MiB, 64 * KiB],
  [0xb4, 8 * MiB, 2 * MiB],
];

test('qemu-storage-daemon fleecing: full and bitmap-incremental backups of snapshot exports under concurrent writes', async () => {
  requireTools('qemu-storage-daemon', 'qemu-img', 'qemu-io', 'cmp');
  const scratch = await scratchDir('fleece-qsd-');
  const dir = scratch.path;
  const image = join(dir, 'vm.qcow2');
  const qmpSocket = join(dir, 'qmp.sock');
  const nbdSocket = join(dir, 'nbd.sock');
  const repo = join(dir, 'repo');
  const uri = (name: string): string => `nbd+unix:///${name}?socket=${nbdSocket}`;
  let qsd: Child | undefined;
  let qmp: Qmp | undefined;
  try {
    assert.equal((await fleece(['init', '--repo', repo])).code, 0);
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', image, '32M']);
    await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 8M', '-c', 'write -P 0x22 16M 4M', '-c', 'write -P 0x33 31M 1M', image]);
    const expected1 = join(dir, 'expected-1.raw');
    await runOk('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, expected1]);

    qsd = startChild('qemu-storage-daemon', ['--chardev', `socket,id=qmp0,path=${qmpSocket},server=on,wait=off`, '--monitor', 'chardev=qmp0']);
    await waitForSocket(qmpSocket);
    const q = (qmp = await Qmp.connect(qmpSocket));
    await q.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'source', file: { driver: 'file', filename: image } });
    await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbdSocket } } });

    /** The fleecing graph for round `n`: temp target, cbw filter over source, snapshot-access, two exports. */
    const setUp = async (n: number, bitmap: string | undefined): Promise<void> => {
      const temp = join(dir, `fleece-${n}.raw`);
      await runOk('qemu-img', ['create', '-q', '-f', 'raw', temp, '32M']);
      await q.execute('blockdev-add', { driver: 'file', 'node-name': `temp-${n}`, filename: temp });
      await q.execute('blockdev-add', {
        driver: 'copy-before-write',
        'node-name': `cbw-${n}`,
        file: 'source',
        target: `temp-${n}`,
        // Copy (and let the snapshot read) only what the incremental needs.
        ...(bitmap ? { bitmap: { node: 'source', name: bitmap } } : {}),
      });
      await q.execute('blockdev-add', { driver: 'snapshot-access', 'node-name': `snap-${n}`, file: `cbw-${n}` });
      await q.execute('block-export-add', {
        type: 'nbd', id: `snap-${n}`, 'node-name': `snap-${n}`, name: 'snap', writable: false,
        ...(bitmap ? { bitmaps: [{ node: 'source', name: bitmap }] } : {}),
      });
      await q.execute('block-export-add', { type: 'nbd', id: `live-${n}`, 'node-name': `cbw-${n}`, name: 'live', writable: true });
    };
    const tearDown = async (n: number): Promise<void> => {
      await deleteExport(q, `snap-${n}`);
      await deleteExport(q, `live-${n}`);
      for (const node of [`snap-${n}`, `cbw-${n}`, `temp-${n}`]) await q.execute('blockdev-del', { 'node-name': node });
    };
    const backupWhileWriting = async (writes: [number, number, number][], args: string[]): Promise<{ id: string; parent: string | null; bytesRead: number; total: number }> => {
      const writer = runOk('qemu-io', ['-f', 'raw', ...writerCommands(writes), uri('live')]);
      const backup = fleece(['backup', uri('snap'), '--disk', 'vm', '--repo', repo, '--json', ...args]);
      const [, result] = await Promise.all([writer, backup]);
      assert.equal(result.code, 0, result.stderr);
      const manifest = JSON.parse(result.stdout) as { id: string; parent: string | null; bytesRead: number };
      const progress = result.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { total: number });
      return { ...manifest, total: progress[progress.length - 1]?.total ?? 0 };
    };

    // Round 1: the point in time and the bitmap recording changes since it start together.
    await q.execute('transaction', { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'source', name: 'since-1', granularity: GRANULARITY } }] });
    await setUp(1, undefined);
    const full = await backupWhileWriting(writes1, []);
    assert.equal(full.parent, null);
    await tearDown(1);

    // What the disk holds now is round 2's point in time; read it through a plain export.
    await q.execute('block-export-add', { type: 'nbd', id: 'plain', 'node-name': 'source', name: 'plain', writable: false });
    const expected2 = join(dir, 'expected-2.raw');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('plain'), expected2]);
    await deleteExport(q, 'plain');
    assert.notEqual((await run('cmp', ['-s', expected1, expected2])).code, 0, 'the round 1 writer changed the disk');

    // Round 2: freeze since-1 at this point in time and start since-2 in one transaction.
    await q.execute('transaction', {
      actions: [
        { type: 'block-dirty-bitmap-add', data: { node: 'source', name: 'since-2', granularity: GRANULARITY } },
        { type: 'block-dirty-bitmap-disable', data: { node: 'source', name: 'since-1' } },
      ],
    });
    await setUp(2, 'since-1');
    const incremental = await backupWhileWriting(writes2, ['--bitmap', 'since-1']);
    assert.equal(incremental.parent, full.id);
    assert.equal(incremental.total, dirtyBytes(writes1));
    assert.ok(incremental.bytesRead > 0 && incremental.bytesRead <= dirtyBytes(writes1), `incremental read ${incremental.bytesRead} bytes`);
    await tearDown(2);
    // The backup is committed: since-1 has served its purpose; since-2 carries on.
    await q.execute('block-dirty-bitmap-remove', { node: 'source', name: 'since-1' });

    for (const [id, expected] of [[full.id, expected1], [incremental.id, expected2]] as const) {
      const restored = join(dir, `restored-${id}.raw`);
      const r = await fleece(['restore', id, restored, '--repo', repo]);
      assert.equal(r.code, 0, r.stderr);
      await runOk('cmp', [restored, expected]);
    }
  } finally {
    qmp?.close();
    await qsd?.stop();
    await scratch.cleanup();
  }
});

/** block-export-del returns before the export is gone; wait until QMP no longer lists it. */
async function deleteExport(q: Qmp, id: string): Promise<void> {
  await q.execute('block-export-del', { id });
  for (let i = 0; i < 100; i++) {
    const exports = await q.execute<{ id: string }[]>('query-block-exports');
    if (!exports.some((e) => e.id === id)) return;
    await sleep(20);
  }
  throw new Error(`export '${id}' still present`);
}
