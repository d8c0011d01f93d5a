// `fleece restore ID disk:NAME --live`: the daemon serves the disk at once (reads of regions not
// yet copied come from the backup, guest writes stay), copies the rest in the background, and
// resumes after kill -9 from its persisted fill map; the end result is backup + writes, exactly.
// Plus the fill-map invariant in process: only flushed or FUA writes survive a restart as local.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { DurableOverlayDevice } from '../../src/jobs/instant-restore/durable-overlay.js';
import { decodeFillMap, encodeFillMap } from '../../src/jobs/instant-restore/fill-map.js';
import { OverlayDevice } from '../../src/jobs/instant-restore/overlay-device.js';
import { startDaemon, withState, type DaemonHandle } from '../live/daemon-harness.js';
import { requireTools, runOk } from '../helpers/tools.js';
import { fleece } from './helpers.js';

const K = 1024;
const M = 1024 * K;
const CHUNK = 64 * K;
const SIZE = 24 * M;

interface RestoreStatus {
  state: string;
  doneBytes: number;
  totalBytes: number;
}

async function backupImage(state: string): Promise<{ repo: string; id: string; bytes: Buffer }> {
  const bytes = randomBytes(SIZE);
  bytes.fill(0, 10 * M, 12 * M); // zero slots
  const source = join(state, 'source.img');
  await writeFile(source, bytes);
  const repo = join(state, 'repo');
  assert.equal((await fleece(['init', '--repo', repo, '--chunk-size', '64K'])).code, 0);
  const backup = await fleece(['backup', source, '--disk', 'vm', '--repo', repo, '--json']);
  assert.equal(backup.code, 0, backup.stderr);
  return { repo, id: (JSON.parse(backup.stdout) as { id: string }).id, bytes };
}

async function restoreStatus(daemon: DaemonHandle, disk: string): Promise<RestoreStatus | undefined> {
  const disks = await daemon.json<{ name: string; restore?: RestoreStatus }[]>('disk', 'list');
  return disks.find((d) => d.name === disk)!.restore;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 40_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Guest writes through qemu-io (which flushes before it exits), mirrored into `expected`. */
async function guestWrites(uri: string, expected: Buffer, writes: Array<{ offset: number; length: number; pattern: number | 'zero' }>): Promise<void> {
  const commands = writes.flatMap((w) => ['-c', w.pattern === 'zero' ? `write -z ${w.offset} ${w.length}` : `write -P ${w.pattern} ${w.offset} ${w.length}`]);
  await runOk('qemu-io', ['-f', 'raw', ...commands, uri]);
  for (const w of writes) expected.fill(w.pattern === 'zero' ? 0 : w.pattern, w.offset, w.offset + w.length);
}

async function diskSha(daemon: DaemonHandle, disk: string, out: string): Promise<string> {
  await runOk('nbdcopy', [daemon.uri(disk), out]);
  return sha(await readFile(out));
}

function sha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

test('live restore: served at once, reads and writes while copying, a plain disk at the end', async () => {
  requireTools('qemu-io', 'nbdcopy');
  await withState(async (state) => {
    const { repo, id, bytes } = await backupImage(state);
    const expected = Buffer.from(bytes);
    const daemon = await startDaemon(state);
    try {
      assert.equal((await stat(join(state, 'api.sock'))).mode & 0o777, 0o600);
      const started = await daemon.cliResult('restore', id.slice(0, 10), 'disk:vm1', '--repo', repo, '--live', '--rate-limit', '3M');
      assert.equal(started.code, 0, started.stderr);
      assert.match(started.stdout, /disk vm1 \(24\.0 MiB\) serves backup .* now as NBD export 'vm1'/);
      const uri = daemon.uri('vm1');
      // Regions far from the copy front are read from the repository on demand.
      await runOk('qemu-io', ['-f', 'raw', '-r', '-c', `read -P 0 ${10 * M} ${2 * M}`, uri]);
      await guestWrites(uri, expected, [
        { offset: 20 * M, length: CHUNK, pattern: 0x5a }, // a whole block
        { offset: 22 * M - 3000, length: 5000, pattern: 0x33 }, // parts of two blocks
        { offset: 16 * M, length: 128 * K, pattern: 'zero' },
        { offset: 11 * M + 100, length: 10, pattern: 0x44 }, // inside a zero slot
      ]);
      assert.match(await daemon.cli('disk', 'list'), /^vm1\t.*\trestore: copying [\d.]+% of [0-9a-f]{8}$/m, 'the copy finished before the writes');
      await runOk('qemu-io', ['-f', 'raw', '-r', '-c', `read -P 0x5a ${20 * M} ${CHUNK}`, '-c', `read -P 0x33 ${22 * M - 3000} 5000`, '-c', `read -P 0 ${16 * M} ${128 * K}`, uri]);
      const before = await restoreStatus(daemon, 'vm1');
      assert.equal(await diskSha(daemon, 'vm1', join(state, 'mid.img')), sha(expected), 'the disk read mid-copy is not backup + writes');
      assert.equal(before?.state, 'copying', 'the copy finished before the mid-copy read');
      assert.ok(before.doneBytes < SIZE);

      await waitFor('the copy to finish', async () => (await restoreStatus(daemon, 'vm1'))?.state === 'done');
      assert.equal(await diskSha(daemon, 'vm1', join(state, 'end.img')), sha(expected));
      await assert.rejects(stat(join(state, 'disks', 'vm1', 'restore')), { code: 'ENOENT' });
    } finally {
      await daemon.stop();
    }
    const again = await startDaemon(state);
    try {
      assert.equal(await restoreStatus(again, 'vm1'), undefined, 'still restoring after a restart');
      assert.equal(await diskSha(again, 'vm1', join(state, 'plain.img')), sha(expected));
    } finally {
      await again.stop();
    }
  });
});

test('live restore: the daemon is killed -9 mid-copy, restarts and resumes; the result is exact', async () => {
  requireTools('qemu-io', 'nbdcopy');
  await withState(async (state) => {
    const { repo, id, bytes } = await backupImage(state);
    const expected = Buffer.from(bytes);
    let daemon = await startDaemon(state);
    try {
      const started = await daemon.cliResult('restore', id, 'disk:vm1', '--repo', repo, '--live', '--rate-limit', '3M', '--json');
      assert.equal(started.code, 0, started.stderr);
      await guestWrites(daemon.uri('vm1'), expected, [
        { offset: 0, length: 3 * CHUNK, pattern: 0x11 }, // ahead of the copy front, whole blocks
        { offset: 23 * M + 7, length: 70_000, pattern: 0x22 },
        { offset: 10 * M + CHUNK, length: CHUNK, pattern: 0x66 },
      ]);
      await waitFor('a quarter of the copy', async () => ((await restoreStatus(daemon, 'vm1'))?.doneBytes ?? 0) >= SIZE / 4);
      await sleep(1200); // at least one periodic save of the fill map
      await daemon.kill9();
      const saved = decodeFillMap(await readFile(join(state, 'disks', 'vm1', 'restore', 'fill.map')), CHUNK, SIZE / CHUNK);
      const local = saved.reduce((n, b) => n + b, 0);
      assert.ok(local >= SIZE / 4 / CHUNK && local < SIZE / CHUNK, `killed with ${local} of ${SIZE / CHUNK} blocks saved local`);

      daemon = await startDaemon(state);
      const resumed = await restoreStatus(daemon, 'vm1');
      assert.ok(resumed, 'the restore did not resume after the restart');
      assert.ok(resumed.doneBytes >= local * CHUNK, `resumed with ${resumed.doneBytes} bytes local, the map had ${local * CHUNK}`);
      await guestWrites(daemon.uri('vm1'), expected, [{ offset: 12 * M - 10, length: 20, pattern: 0x77 }]);
      await waitFor('the resumed copy to finish', async () => (await restoreStatus(daemon, 'vm1'))?.state === 'done');
      assert.equal(await diskSha(daemon, 'vm1', join(state, 'end.img')), sha(expected));
    } finally {
      await daemon.stop();
    }
  });
});

test('fill map: only blocks settled before a flush or FUA are saved; a restart re-copies the rest, keeps the saved', async () => {
  const g = 4096;
  const base = new MemoryDevice(8 * g);
  await base.write(0, Buffer.alloc(6 * g, 0xbb)); // blocks 6-7 are zero in the base
  const local = new MemoryDevice(8 * g);
  const saves: Uint8Array[] = [];
  const save = async (blocks: Uint8Array): Promise<void> => {
    saves.push(decodeFillMap(encodeFillMap(blocks, g), g, blocks.length));
  };
  const first = new DurableOverlayDevice(new OverlayDevice(base, local, { granularity: g }), { save, intervalMs: 60_000 });
  await first.write(1 * g, Buffer.alloc(g, 0x01)); // whole block, not flushed
  await first.write(2 * g + 10, Buffer.alloc(5, 0x02)); // partial: copy-up, not flushed
  assert.equal(saves.length, 0);
  await first.flush();
  assert.deepEqual([...saves.at(-1)!], [0, 1, 1, 0, 0, 0, 0, 0]);
  await first.write(3 * g, Buffer.alloc(g, 0x03), { fua: true });
  assert.deepEqual([...saves.at(-1)!], [0, 1, 1, 1, 0, 0, 0, 0]);
  await first.write(4 * g, Buffer.alloc(g, 0x04)); // never flushed: lost in the "crash"
  await local.write(6 * g, Buffer.alloc(g, 0x06)); // stale bytes of an unflushed write in a zero block

  // Restart from the last saved map over the same local image.
  const map = saves.at(-1)!;
  const second = new DurableOverlayDevice(new OverlayDevice(base, local, { granularity: g, initial: map, staleOverlay: true }), { save, intervalMs: 60_000 });
  await second.startFill();
  assert.deepEqual([...saves.at(-1)!], [1, 1, 1, 1, 1, 1, 1, 1]);
  const want = Buffer.alloc(8 * g);
  want.fill(0xbb, 0, 6 * g);
  want.fill(0x01, g, 2 * g);
  want.fill(0x02, 2 * g + 10, 2 * g + 15);
  want.fill(0x03, 3 * g, 4 * g);
  const got = Buffer.alloc(8 * g);
  await second.read(0, got);
  assert.ok(got.equals(want), 'restart lost a flushed write or kept an unflushed one');
  await second.close();

  const bytes = encodeFillMap(map, g);
  bytes[20]! ^= 1;
  assert.throws(() => decodeFillMap(bytes, g, 8), { code: 'EFILLMAP', message: /checksum mismatch/ });
  assert.throws(() => decodeFillMap(encodeFillMap(map, g), 2 * g, 8), { message: /describes 8 blocks of 4096 bytes, expected 8 of 8192/ });
});
