// Crashes around `fleece backup disk:NAME`: a backup job killed -9 mid-incremental leaves a
// stale snapshot and its old bitmap, so the next backup drops the snapshot and still catches
// every change; a daemon killed -9 leaves its bitmaps inconsistent, so the next backup is full
// and says so; leftovers of a job killed between its commit steps are cleaned up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTools, run, scratchDir } from '../helpers/tools.js';
import { CLI } from '../live/daemon-harness.js';
import {
  backup, backupArgs, bitmapNames, diskSha, dirtyBytes, DISK, fleeceRepo, M, random, randomWrites, restoreSha, snapshots, startRig,
  startWriter, waitForBackupSnapshot, writeDisk, type Rig,
} from './disk-helpers.js';

async function withRig(fn: (rig: Rig) => Promise<void>): Promise<void> {
  const dir = await scratchDir('fleece-disk-kill-');
  let rig: Rig | undefined;
  try {
    rig = await startRig(dir.path, 64 * M);
    await fn(rig);
  } finally {
    await rig?.daemon.stop();
    await dir.cleanup();
  }
}

async function repoCheck(rig: Rig): Promise<void> {
  const check = await run(process.execPath, [CLI, 'repo', 'check', '--repo', rig.repo]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
}

test('kill -9 of a backup job mid-incremental: the next backup drops its snapshot and misses no change', async () => {
  requireTools('qemu-io', 'nbdcopy');
  await withRig(async (rig) => {
    const rand = random(7);
    await writeDisk(rig, [{ offset: 8 * M, length: 8 * M, pattern: 0x11 }]);
    const full = await backup(rig);
    const before = await bitmapNames(rig);

    const first = randomWrites(rand, 48, 0, 64 * M);
    await writeDisk(rig, first);
    const child = spawn(process.execPath, backupArgs(rig, '--rate-limit', '256K'), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const snap = await waitForBackupSnapshot(rig);
      // Mid-copy: the job has reported progress and is throttled far from the end.
      for (const deadline = Date.now() + 60_000; !/"event":"progress"/.test(stderr) && Date.now() < deadline; ) await sleep(25);
      assert.match(stderr, /"event":"progress"/);
      child.kill('SIGKILL');
      await exited;
      assert.deepEqual(await snapshots(rig), [snap], 'the killed job left its snapshot behind');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    const after = (await rig.daemon.api<{ bitmaps: { name: string; dirtyBytes: number }[] }>(`/disks/${DISK}/bitmaps`)).bitmaps;
    assert.deepEqual(after.map((b) => b.name), before.map((b) => b.name), 'the killed job did not touch the checkpoint bitmap');
    assert.equal(after[0]!.dirtyBytes, dirtyBytes(first), 'which still marks every write since the last backup');
    assert.equal(JSON.parse(await fleeceRepo(rig, 'list', '--json')).length, 1, 'no manifest from the killed job');

    const second = randomWrites(rand, 16, 0, 64 * M);
    await writeDisk(rig, second);
    const sha = await diskSha(rig);
    const next = await backup(rig);
    assert.match(next.stderr, /released snapshot 'vm@fleece-backup-\d+-[0-9a-f]+' left by an interrupted backup/);
    assert.equal(next.manifest.parent, full.manifest.id, 'incremental on the last committed backup');
    assert.equal(next.total, dirtyBytes(first, second), 'reads the changes the killed job never committed too');
    assert.equal(await restoreSha(rig, next.manifest.id), sha);
    assert.deepEqual(await snapshots(rig), []);
    await repoCheck(rig);
  });
});

test('leftovers of a job killed between commit steps: an orphan checkpoint bitmap and a dead job\'s snapshot', async () => {
  requireTools('qemu-io', 'nbdcopy');
  await withRig(async (rig) => {
    await writeDisk(rig, [{ offset: 0, length: 2 * M, pattern: 0x22 }]);
    const full = await backup(rig);
    // Killed after its manifest and its new bitmap, before removing the old one: an extra bitmap.
    await rig.daemon.cli('bitmap', 'add', DISK, 'fleece-backup.00000000deadbeef');
    // Killed after writing nothing but its snapshot (pid 4194304 is past Linux's pid_max).
    await rig.daemon.cli('snapshot', 'create', DISK, '--name', 'fleece-backup-4194304-0badcafe');
    const writes = randomWrites(random(3), 12, 0, 64 * M);
    await writeDisk(rig, writes);
    const sha = await diskSha(rig);
    const next = await backup(rig);
    assert.equal(next.manifest.parent, full.manifest.id);
    assert.equal(next.total, dirtyBytes(writes));
    assert.match(next.stderr, /released snapshot 'vm@fleece-backup-4194304-0badcafe'/);
    assert.deepEqual((await bitmapNames(rig)).map((b) => b.name), [`fleece-backup.${next.manifest.checkpoint}`]);
    assert.deepEqual(await snapshots(rig), []);
    assert.equal(await restoreSha(rig, next.manifest.id), sha);
  });
});

test('kill -9 of the daemon during writes: the next backup is full, says so, and restores identical', async () => {
  requireTools('qemu-io', 'nbdcopy');
  await withRig(async (rig) => {
    const rand = random(11);
    await writeDisk(rig, [{ offset: 20 * M, length: 4 * M, pattern: 0x33 }]);
    await backup(rig);
    await writeDisk(rig, randomWrites(rand, 8, 0, 64 * M));
    const second = await backup(rig);
    assert.notEqual(second.manifest.parent, null);

    const writer = startWriter(rig, randomWrites(rand, 2000, 0, 64 * M));
    const writerDone = new Promise<void>((resolve) => writer.once('exit', () => resolve()));
    // Wait until writes are landing, then kill the daemon under them.
    for (let i = 0; i < 400; i++) {
      const b = (await rig.daemon.api<{ bitmaps: { dirtyBytes: number | null }[] }>(`/disks/${DISK}/bitmaps`)).bitmaps[0];
      if ((b?.dirtyBytes ?? 0) > 0) break;
      await sleep(25);
    }
    await rig.daemon.kill9();
    if (writer.exitCode === null && writer.signalCode === null) writer.kill('SIGKILL');
    await writerDone;
    await rig.restart();
    assert.deepEqual((await bitmapNames(rig)).map((b) => b.inconsistent), [true], 'the checkpoint bitmap is inconsistent after the crash');

    const sha = await diskSha(rig);
    const full = await backup(rig);
    assert.equal(full.manifest.parent, null, 'the backup after the crash is full');
    assert.match(full.stderr, /WARNING: change tracking of disk 'vm' was lost: bitmap 'fleece-backup\.[0-9a-f]+' is inconsistent.*FULL/);
    assert.equal(full.total, 64 * M);
    assert.equal(await restoreSha(rig, full.manifest.id), sha);
    assert.deepEqual((await bitmapNames(rig)).map((b) => [b.name, b.inconsistent]), [[`fleece-backup.${full.manifest.checkpoint}`, false]], 'the inconsistent bitmap is gone');

    const writes = randomWrites(rand, 8, 0, 64 * M);
    await writeDisk(rig, writes);
    const after = await diskSha(rig);
    const incremental = await backup(rig);
    assert.equal(incremental.manifest.parent, full.manifest.id, 'the chain resumes from the full backup');
    assert.equal(incremental.total, dirtyBytes(writes));
    assert.equal(await restoreSha(rig, incremental.manifest.id), after);
    await repoCheck(rig);
  });
});
