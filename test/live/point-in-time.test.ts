// Point-in-time consistency under load with real clients: fio rewrites random, unaligned ranges
// through NBD as fast as it can while nbdcopy pulls the snapshot export; the pulled image must
// equal the disk at snapshot time (copied while writers were stopped). Three cache variants:
// RAM big enough, a tiny RAM cache that spills, caches so small the snapshot breaks.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, readFile, readdir, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTools, run, runOk } from '../helpers/tools.js';
import { startDaemon, withState, type DaemonHandle } from './daemon-harness.js';

const SIZE = '96M';

interface Stats {
  disks: { cbwCopies: number; snapshots: { copies: number; broken?: string; cache: { ramBytes: number; spillBytes: number; spillPath?: string } }[] }[];
}

const sha = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');

/** fio writing random unaligned ranges through NBD for `seconds`; resolves with its exit status. */
function fioWriter(uri: string, seconds: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('fio', [
      '--name=writer', '--ioengine=nbd', `--uri=${uri}`, `--size=${SIZE}`, '--rw=randwrite', '--bsrange=512-192k',
      '--bs_unaligned=1', '--iodepth=16', '--time_based', `--runtime=${seconds}`, '--numjobs=1', '--randrepeat=0',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

async function seed(d: DaemonHandle): Promise<void> {
  await d.cli('disk', 'create', 'vm', '--size', SIZE);
  // Random content everywhere, so a stale or new byte is always visible.
  await runOk('fio', ['--name=fill', '--ioengine=nbd', `--uri=${d.uri('vm')}`, `--size=${SIZE}`, '--rw=write', '--bs=1M', '--iodepth=8', '--refill_buffers']);
}

async function pointInTime(d: DaemonHandle, state: string, createArgs: string[]): Promise<{ truthSum: string; pulled: { code: number; sum?: string; stderr: string }; writer: { code: number; stderr: string } }> {
  await seed(d);
  // Writers are stopped: the image file now is the disk at snapshot time.
  const truth = join(state, 'truth.img');
  await copyFile(join(state, 'disks', 'vm', 'disk.img'), truth);
  await d.cli('snapshot', 'create', 'vm', '--name', 'pit', ...createArgs);
  const writer = fioWriter(d.uri('vm'), 3);
  await sleep(300); // let the writer get going before the reader starts
  const out = join(state, 'pulled.img');
  const copy = await run('nbdcopy', [d.uri('vm@pit'), out], { timeoutMs: 120_000 });
  const w = await writer;
  return { truthSum: await sha(truth), pulled: { code: copy.code, stderr: copy.stderr, sum: copy.code === 0 ? await sha(out) : undefined }, writer: w };
}

test('RAM cache big enough: the pulled snapshot equals the disk at snapshot time', async () => {
  requireTools('fio', 'nbdcopy');
  await withState(async (state) => {
    const d = await startDaemon(state);
    try {
      const { truthSum, pulled, writer } = await pointInTime(d, state, ['--ram-cache', '256M']);
      assert.equal(writer.code, 0, writer.stderr);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(pulled.sum, truthSum);
      const stats = await d.api<Stats>('/stats');
      assert.ok(stats.disks[0]!.snapshots[0]!.copies > 100, 'the writer really overwrote protected clusters');
      assert.equal(stats.disks[0]!.snapshots[0]!.cache.spillBytes, 0);
    } finally {
      await d.stop();
    }
  });
});

test('tiny RAM cache spills to disk; after release no CBW happens and the spill file is gone', async () => {
  requireTools('fio', 'nbdcopy');
  await withState(async (state) => {
    const spill = join(state, 'spill');
    await mkdir(spill);
    const d = await startDaemon(state);
    try {
      const { truthSum, pulled, writer } = await pointInTime(d, state, ['--ram-cache', '1M', '--spill-dir', spill, '--spill-max', '1G']);
      assert.equal(writer.code, 0, writer.stderr);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(pulled.sum, truthSum);
      const before = await d.api<Stats>('/stats');
      const snap = before.disks[0]!.snapshots[0]!;
      assert.ok(snap.cache.spillBytes > 0, 'spilled');
      assert.equal(snap.cache.ramBytes, 1024 * 1024);
      assert.equal((await readdir(spill)).length, 1);
      await d.cli('snapshot', 'release', 'vm@pit');
      assert.deepEqual(await readdir(spill), [], 'spill file deleted on release');
      const copies = (await d.api<Stats>('/stats')).disks[0]!.cbwCopies;
      const again = await fioWriter(d.uri('vm'), 1);
      assert.equal(again.code, 0, again.stderr);
      assert.equal((await d.api<Stats>('/stats')).disks[0]!.cbwCopies, copies, 'no copy-before-write after release');
    } finally {
      await d.stop();
    }
  });
});

test('caches too small: the snapshot breaks, reads fail, guest writes never fail', async () => {
  requireTools('fio', 'nbdcopy');
  await withState(async (state) => {
    const d = await startDaemon(state);
    try {
      const { pulled, writer } = await pointInTime(d, state, ['--ram-cache', '256K']);
      assert.equal(writer.code, 0, `guest writes failed: ${writer.stderr}`);
      assert.notEqual(pulled.code, 0, 'nbdcopy of a broken snapshot must fail, never copy wrong data');
      const stats = await d.api<Stats>('/stats');
      assert.match(stats.disks[0]!.snapshots[0]!.broken ?? '', /cache full/);
    } finally {
      await d.stop();
    }
  });
});

test('read-once with a wait policy: a tiny cache suffices, guest writes wait, the pull is exact', async () => {
  requireTools('fio', 'nbdcopy');
  await withState(async (state) => {
    const d = await startDaemon(state);
    try {
      const { truthSum, pulled, writer } = await pointInTime(d, state, ['--ram-cache', '1M', '--on-full', 'wait', '--read-once']);
      assert.equal(writer.code, 0, writer.stderr);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(pulled.sum, truthSum);
      const snap = (await d.api<Stats>('/stats')).disks[0]!.snapshots[0]!;
      assert.equal(snap.broken, undefined);
      assert.ok(snap.cache.ramBytes <= 1024 * 1024);
    } finally {
      await d.stop();
    }
  });
});
