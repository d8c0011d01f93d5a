// `fleece backup disk:NAME` over a chain of rounds: the first backup is full, each later one is
// incremental on the one before and reads only the clusters written since (writes during a
// backup included, landing in the next one), every backup restores byte-identical, and deleting
// backups in the middle of the chain (then gc) breaks nothing, including the next backup.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { requireTools, run, scratchDir } from '../helpers/tools.js';
import {
  backup, backupArgs, bitmapNames, diskSha, dirtyBytes, fleeceRepo, M, parseBackup, random, randomWrites, restoreSha, snapshots,
  startRig, waitForBackupSnapshot, writeDisk, type BackupResult, type Rig, type Write,
} from './disk-helpers.js';

interface Round {
  readonly id: string;
  readonly sha: string;
}

/**
 * Runs a backup while `during` writes through the disk after its snapshot exists: the job is
 * stopped (SIGSTOP) from then until the writes are done, so they surely meet a live snapshot.
 */
async function backupWhileWriting(rig: Rig, during: readonly Write[]): Promise<{ result: BackupResult; copies: number }> {
  const child = spawn(process.execPath, backupArgs(rig, '--rate-limit', '1M'), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  try {
    const snap = await waitForBackupSnapshot(rig);
    child.kill('SIGSTOP');
    try {
      await writeDisk(rig, during);
    } finally {
      child.kill('SIGCONT');
    }
    // The writes met the live snapshot, which copied the old clusters first.
    const live = (await rig.daemon.api<{ snapshots: { export: string; copies: number }[] }>('/snapshots')).snapshots.find((s) => s.export.endsWith(`@${snap}`));
    assert.ok(live, 'the snapshot lives until the job ends');
    const code = await exited;
    assert.equal(code, 0, stderr);
    return { result: parseBackup({ stdout, stderr, code }), copies: live.copies };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

test('disk: backups form an incremental chain that restores identical, survives deletions and gc', async () => {
  requireTools('qemu-io', 'nbdcopy');
  const dir = await scratchDir('fleece-disk-chain-');
  let rig: Rig | undefined;
  try {
    rig = await startRig(dir.path, 64 * M);
    const rand = random(20240611);
    await writeDisk(rig, [
      { offset: 0, length: 4 * M, pattern: 0xaa },
      { offset: 40 * M, length: 3 * M, pattern: 0x55 },
    ]);

    const rounds: Round[] = [];
    const first = await backup(rig);
    assert.equal(first.manifest.parent, null, 'the first backup is full');
    assert.match(first.stderr, /first backup of disk 'vm'/);
    rounds.push({ id: first.manifest.id, sha: await diskSha(rig) });

    let pending: Write[] = []; // written during the previous backup: must land in the next one
    for (let round = 2; round <= 6; round++) {
      const writes = randomWrites(rand, 16, 0, 64 * M);
      await writeDisk(rig, writes);
      const sha = await diskSha(rig);
      let result: BackupResult;
      if (round === 4) {
        // Writes continue during this backup, all after its snapshot: it must show `sha`.
        const during = [...writes.slice(0, 6).map((w) => ({ ...w, pattern: w.pattern ^ 0xff })), ...randomWrites(rand, 6, 0, 64 * M)];
        const { result: r, copies } = await backupWhileWriting(rig, during);
        assert.ok(copies > 0, 'copy-before-write preserved clusters the backup still needed');
        result = r;
        assert.equal(result.total, dirtyBytes(pending, writes));
        pending = during;
      } else {
        result = await backup(rig);
        assert.equal(result.total, dirtyBytes(pending, writes), `round ${round} reads exactly the dirty clusters`);
        pending = [];
      }
      assert.equal(result.manifest.parent, rounds[rounds.length - 1]!.id, `round ${round} is incremental on round ${round - 1}`);
      assert.ok(result.manifest.bytesRead > 0 && result.manifest.bytesRead <= result.total, `round ${round} read ${result.manifest.bytesRead} of ${result.total} bytes`);
      assert.ok(result.total < 6 * M, `round ${round} planned ${result.total} bytes, a fraction of the 64 MiB disk`);
      rounds.push({ id: result.manifest.id, sha });
    }
    assert.deepEqual(await snapshots(rig), [], 'every job released its snapshot');
    const bitmaps = (await bitmapNames(rig)).filter((b) => b.name.startsWith('fleece-backup.'));
    const last = (JSON.parse(await fleeceRepo(rig, 'show', rounds[5]!.id, '--json')) as { checkpoint: string }).checkpoint;
    assert.deepEqual(bitmaps.map((b) => b.name), [`fleece-backup.${last}`], 'one checkpoint bitmap, the last backup\'s');

    for (const [i, r] of rounds.entries()) assert.equal(await restoreSha(rig, r.id), r.sha, `backup of round ${i + 1} restores identical`);

    await fleeceRepo(rig, 'delete', rounds[1]!.id, rounds[3]!.id);
    await fleeceRepo(rig, 'gc');
    for (const i of [0, 2, 4, 5]) assert.equal(await restoreSha(rig, rounds[i]!.id), rounds[i]!.sha, `round ${i + 1} restores identical after deletions and gc`);

    const writes = randomWrites(rand, 16, 0, 64 * M);
    await writeDisk(rig, writes);
    const sha = await diskSha(rig);
    const seventh = await backup(rig);
    assert.equal(seventh.manifest.parent, rounds[5]!.id);
    assert.equal(seventh.total, dirtyBytes(pending, writes));
    assert.equal(await restoreSha(rig, seventh.manifest.id), sha, 'a backup after deletions restores identical');
    const check = await run(process.execPath, ['dist/src/cli/fleece.cjs', 'repo', 'check', '--repo', rig.repo]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
  } finally {
    await rig?.daemon.stop();
    await dir.cleanup();
  }
});
