// Dirty bitmaps seen by real clients: `nbdinfo --map=qemu:dirty-bitmap:NAME` and qemu-img's
// x-dirty-bitmap trick must show exactly the clusters written; bitmaps and disks survive a clean
// restart; a kill -9 during writes leaves the bitmap inconsistent, and nothing will trust it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTools, run, runOk } from '../helpers/tools.js';
import { startDaemon, withState, type DaemonHandle } from './daemon-harness.js';

const K = 1024;
const M = K * K;

/** The writes of the test: [qemu-io command, offset, length]. */
const writes: [string, number, number][] = [
  ['write -P 1 70k 4k', 70 * K, 4 * K],
  ['write -P 2 1M 130k', M, 130 * K],
  ['write -z 5M 64k', 5 * M, 64 * K],
  ['discard 9M 8k', 9 * M, 8 * K],
  ['write -P 3 16383k 1k', 16383 * K, K],
];

/** Dirty ranges a bitmap of this granularity must report for `writes`, merged. */
function expectedDirty(granularity: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [, offset, length] of [...writes].sort((a, b) => a[1] - b[1])) {
    const start = Math.floor(offset / granularity) * granularity;
    const end = Math.ceil((offset + length) / granularity) * granularity;
    const last = out[out.length - 1];
    if (last && last[1] >= start) last[1] = Math.max(last[1], end);
    else out.push([start, end]);
  }
  return out;
}

async function nbdinfoDirty(d: DaemonHandle, exportName: string, bitmap: string): Promise<[number, number][]> {
  const out = await runOk('nbdinfo', [`--map=qemu:dirty-bitmap:${bitmap}`, d.uri(exportName)]);
  return out
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number))
    .filter((f) => (f[2]! & 1) === 1)
    .map((f) => [f[0]!, f[0]! + f[1]!]);
}

async function qemuImgDirty(d: DaemonHandle, exportName: string, bitmap: string): Promise<[number, number][]> {
  const socket = d.uri('').split('socket=')[1]!;
  const out = await runOk('qemu-img', ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${socket},export=${exportName},x-dirty-bitmap=qemu:dirty-bitmap:${bitmap}`]);
  // With x-dirty-bitmap, qemu reports dirty ranges as "data": false.
  return (JSON.parse(out) as { start: number; length: number; data: boolean }[]).filter((e) => !e.data).map((e) => [e.start, e.start + e.length]);
}

test('bitmaps show exactly the clusters written, to nbdinfo and qemu-img, and survive a restart', async () => {
  requireTools('qemu-io', 'qemu-img', 'nbdinfo');
  await withState(async (state) => {
    let d = await startDaemon(state);
    try {
      await d.cli('disk', 'create', 'vm', '--size', '16M');
      await d.cli('bitmap', 'add', 'vm', 'b64');
      await d.cli('bitmap', 'add', 'vm', 'b4', '--granularity', '4K');
      await d.cli('bitmap', 'add', 'vm', 'off', '--disabled');
      await runOk('qemu-io', ['-f', 'raw', ...writes.flatMap(([c]) => ['-c', c]), d.uri('vm')]);
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'b64'), expectedDirty(64 * K));
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'b4'), expectedDirty(4 * K));
      assert.deepEqual(await qemuImgDirty(d, 'vm', 'b64'), expectedDirty(64 * K));
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'off'), []);

      await d.stop();
      d = await startDaemon(state);
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'b64'), expectedDirty(64 * K), 'persisted across a clean restart');
      const list = await d.json<{ name: string; inconsistent: boolean; enabled: boolean }[]>('bitmap', 'list', 'vm');
      assert.deepEqual(list.map((b) => [b.name, b.enabled, b.inconsistent]), [['b4', true, false], ['b64', true, false], ['off', false, false]]);
      const back = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 2 1M 130k', d.uri('vm')]);
      assert.doesNotMatch(back.stdout, /fail/i);

      await d.cli('bitmap', 'merge', 'vm', 'off', 'b64');
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'off'), expectedDirty(64 * K));
      await d.cli('bitmap', 'clear', 'vm', 'b64');
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'b64'), []);
      await d.cli('bitmap', 'rm', 'vm', 'b4');
      assert.notEqual((await run('nbdinfo', ['--map=qemu:dirty-bitmap:b4', d.uri('vm')])).code, 0, 'removed bitmap is no longer exported');

      // A snapshot export carries the bitmaps frozen at its point in time; release keeps "since".
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 4 2M 4k', d.uri('vm')]);
      await d.cli('snapshot', 'create', 'vm', '--name', 's');
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 5 3M 4k', d.uri('vm')]);
      assert.deepEqual(await nbdinfoDirty(d, 'vm@s', 'b64'), [[2 * M, 2 * M + 64 * K]]);
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'b64'), [[2 * M, 2 * M + 64 * K], [3 * M, 3 * M + 64 * K]]);
      await d.cli('snapshot', 'release', 'vm@s', '--keep-bitmap', 'since-s');
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'since-s'), [[3 * M, 3 * M + 64 * K]]);
      // The incremental cycle: --keep-bitmap with the snapshot's own bitmap moves its checkpoint.
      await d.cli('snapshot', 'create', 'vm', '--name', 'inc', '--bitmap', 'b64');
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 6 4M 4k', d.uri('vm')]);
      await d.cli('snapshot', 'release', 'vm@inc', '--keep-bitmap', 'b64');
      assert.deepEqual(await nbdinfoDirty(d, 'vm', 'b64'), [[4 * M, 4 * M + 64 * K]]);
    } finally {
      await d.stop();
    }
  });
});

test('kill -9 during writes: the bitmap comes back inconsistent and can only be removed', async () => {
  requireTools('fio', 'nbdinfo');
  await withState(async (state) => {
    let d = await startDaemon(state);
    try {
      await d.cli('disk', 'create', 'vm', '--size', '32M');
      await d.cli('bitmap', 'add', 'vm', 'daily');
      const fio = spawn('fio', ['--name=w', '--ioengine=nbd', `--uri=${d.uri('vm')}`, '--size=32M', '--rw=randwrite', '--bs=4k', '--iodepth=8', '--time_based', '--runtime=20'], { stdio: 'ignore' });
      const fioDone = new Promise((r) => fio.once('exit', r));
      await sleep(700);
      await d.kill9();
      fio.kill('SIGKILL');
      await fioDone;
      d = await startDaemon(state);
      const [bitmap] = await d.json<{ name: string; inconsistent: boolean; dirtyBytes: number | null }[]>('bitmap', 'list', 'vm');
      assert.equal(bitmap!.inconsistent, true);
      assert.equal(bitmap!.dirtyBytes, null);
      assert.notEqual((await run('nbdinfo', ['--map=qemu:dirty-bitmap:daily', d.uri('vm')])).code, 0, 'not offered over NBD');
      const snap = await d.cliResult('snapshot', 'create', 'vm', '--bitmap', 'daily');
      assert.equal(snap.code, 1);
      assert.match(snap.stderr, /bitmap 'daily' is inconsistent/);
      assert.match((await d.cliResult('bitmap', 'enable', 'vm', 'daily')).stderr, /inconsistent/);
      assert.match((await d.cliResult('bitmap', 'clear', 'vm', 'daily')).stderr, /inconsistent/);
      // Still inconsistent after a clean restart: only removal clears it.
      await d.stop();
      d = await startDaemon(state);
      assert.equal((await d.json<{ inconsistent: boolean }[]>('bitmap', 'list', 'vm'))[0]!.inconsistent, true);
      await d.cli('bitmap', 'rm', 'vm', 'daily');
      assert.deepEqual(await d.json('bitmap', 'list', 'vm'), []);
    } finally {
      await d.stop();
    }
  });
});
