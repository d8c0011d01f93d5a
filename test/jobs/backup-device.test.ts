// A backup as a read-only block device: bytes equal the original at any range, zero slots
// report hole+zero, writes are refused; and `fleece serve-backup` end to end with nbdcopy
// (byte-identical copy) and nbdinfo --map (zero regions where the image had zero chunks).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { BackupDevice } from '../../src/block/drivers/backup-device.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { MemoryStore, Repository, runBackup } from '../../src/repo/index.js';
import { allExtents, prng } from '../block/conformance.js';
import { requireTools, runOk, scratchDir } from '../helpers/tools.js';
import { fleece, startChild, waitForSocket } from './helpers.js';

const K = 1024;
const CHUNK = 64 * K;

/** 3 MiB + 777 bytes: data chunks, whole zero chunks, and a ragged data tail. */
function image(): Buffer {
  const random = prng(9);
  const bytes = Buffer.alloc(3 * 1024 * K + 777);
  const fill = (offset: number, length: number): void => {
    for (let i = 0; i < length; i++) bytes[offset + i] = (random() * 256) | 0;
  };
  fill(0, 200 * K); // slots 0-3 (slot 3 partly)
  fill(1024 * K + 10, 5); // slot 16
  fill(2048 * K, 512 * K); // slots 32-39
  fill(bytes.length - 300, 300); // the tail slot
  return bytes;
}

/** Zero slots of `bytes` as [start, end) byte ranges, merged. */
function zeroRanges(bytes: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let at = 0; at < bytes.length; at += CHUNK) {
    const end = Math.min(bytes.length, at + CHUNK);
    if (!bytes.subarray(at, end).every((b) => b === 0)) continue;
    const last = out[out.length - 1];
    if (last && last[1] === at) last[1] = end;
    else out.push([at, end]);
  }
  return out;
}

test('BackupDevice: reads equal the original; zero slots are hole+zero; read-only; closes', async () => {
  const bytes = image();
  const repo = await Repository.init(new MemoryStore(), { chunkSize: CHUNK });
  const source = new MemoryDevice(bytes.length);
  await source.write(0, bytes);
  const manifest = await runBackup(repo, source, { disk: 'vm1' });
  const device = await BackupDevice.open(repo, manifest, { cacheBytes: 4 * CHUNK });
  try {
    assert.equal(device.size, bytes.length);
    const random = prng(5);
    const ranges = [[0, bytes.length], [bytes.length - 1, 1], [CHUNK - 3, 7], [0, 0]];
    for (let i = 0; i < 200; i++) {
      const length = 1 + Math.floor(random() * 300 * K);
      ranges.push([Math.floor(random() * (bytes.length - length)), length]);
    }
    await Promise.all(
      ranges.map(async ([offset, length]) => {
        const got = Buffer.alloc(length!, 0xee);
        await device.read(offset!, got);
        assert.ok(got.equals(bytes.subarray(offset!, offset! + length!)), `read ${offset}+${length} differs`);
      }),
    );
    const zeroes = (await allExtents(device, 0, bytes.length)).filter((e) => e.zero).map((e) => [e.offset, e.offset + e.length]);
    assert.deepEqual(zeroes, zeroRanges(bytes));
    assert.ok((await allExtents(device, 0, bytes.length)).every((e) => e.hole === e.zero));
    const partial = await device.blockStatus(CHUNK * 5 + 7, 100);
    assert.deepEqual(partial, [{ offset: CHUNK * 5 + 7, length: 100, hole: true, zero: true }]);
    await assert.rejects(device.write(0, Buffer.alloc(1)), { code: 'EPERM' });
    await assert.rejects(device.writeZeroes(0, 1), { code: 'EPERM' });
    await assert.rejects(device.read(bytes.length, Buffer.alloc(1)), { code: 'EINVAL' });
  } finally {
    await device.close();
  }
  await assert.rejects(device.read(0, Buffer.alloc(1)), { code: 'ESHUTDOWN' });
  repo.close();
});

test('fleece serve-backup: nbdcopy gives the original back, nbdinfo --map shows its zero regions', async () => {
  requireTools('nbdcopy', 'nbdinfo', 'cmp');
  const scratch = await scratchDir('fleece-serveb-');
  const dir = scratch.path;
  const bytes = image();
  const repo = join(dir, 'repo');
  const socket = join(dir, 'nbd.sock');
  let server: ReturnType<typeof startChild> | undefined;
  try {
    await writeFile(join(dir, 'disk.raw'), bytes);
    assert.equal((await fleece(['init', '--repo', repo, '--chunk-size', '64K'])).code, 0);
    const backup = await fleece(['backup', '--repo', repo, '--disk', 'vm1', '--json', join(dir, 'disk.raw')]);
    assert.equal(backup.code, 0, backup.stderr);
    const id = (JSON.parse(backup.stdout) as { id: string }).id;
    server = startChild(process.execPath, ['dist/src/cli/fleece.cjs', 'serve-backup', '--repo', repo, '--socket', socket, id.slice(0, 8)]);
    await waitForSocket(socket);
    const uri = `nbd+unix:///vm1?socket=${socket}`;
    await runOk('nbdcopy', [uri, join(dir, 'copy.raw')]);
    await runOk('cmp', [join(dir, 'copy.raw'), join(dir, 'disk.raw')]);

    const map = JSON.parse(await runOk('nbdinfo', ['--map', '--json', uri])) as Array<{ offset: number; length: number; type: number }>;
    const zeroes = map.filter((e) => e.type === 3).map((e) => [e.offset, e.offset + e.length]);
    assert.deepEqual(zeroes, zeroRanges(bytes));
    const info = await runOk('nbdinfo', [uri]);
    assert.match(info, /is_read_only: true/);
    assert.match(info, new RegExp(`backup ${id}`));
  } finally {
    await server?.stop();
    await scratch.cleanup();
  }
});

test('fleece serve-backup --overlay --fill: writable at once, the file ends up the restored disk plus the writes', async () => {
  requireTools('qemu-io', 'nbdcopy', 'cmp');
  const scratch = await scratchDir('fleece-live-');
  const dir = scratch.path;
  const bytes = image();
  const repo = join(dir, 'repo');
  const socket = join(dir, 'nbd.sock');
  let server: ReturnType<typeof startChild> | undefined;
  try {
    await writeFile(join(dir, 'disk.raw'), bytes);
    assert.equal((await fleece(['init', '--repo', repo, '--chunk-size', '64K'])).code, 0);
    const backup = await fleece(['backup', '--repo', repo, '--disk', 'vm1', '--json', join(dir, 'disk.raw')]);
    const id = (JSON.parse(backup.stdout) as { id: string }).id;
    const overlay = join(dir, 'restored.raw');
    server = startChild(process.execPath, ['dist/src/cli/fleece.cjs', 'serve-backup', '--repo', repo, '--socket', socket, '--overlay', overlay, '--fill', id]);
    await waitForSocket(socket);
    const uri = `nbd+unix:///vm1?socket=${socket}`;
    // Partial-chunk writes over data and over a zero chunk, and a write across a chunk boundary.
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xaa 100k 8k', '-c', 'write -P 0xbb 1500k 3k', '-c', 'write -P 0xcc 2044k 8k', uri]);
    const expected = Buffer.from(bytes);
    expected.fill(0xaa, 100 * K, 108 * K);
    expected.fill(0xbb, 1500 * K, 1503 * K);
    expected.fill(0xcc, 2044 * K, 2052 * K);
    await runOk('nbdcopy', [uri, join(dir, 'view.raw')]);
    assert.ok((await readFile(join(dir, 'view.raw'))).equals(expected), 'the export shows the backup plus the writes');
    for (let i = 0; i < 200 && !server.stderr().includes('fill complete'); i++) await sleep(50);
    assert.match(server.stderr(), /fill complete/);
    await server.stop();
    server = undefined;
    assert.ok((await readFile(overlay)).equals(expected), 'the overlay file is the restored disk with the writes');
    // The backup itself never changed.
    assert.equal((await fleece(['restore', '--repo', repo, id, join(dir, 'again.raw')])).code, 0);
    await runOk('cmp', [join(dir, 'again.raw'), join(dir, 'disk.raw')]);
  } finally {
    await server?.stop();
    await scratch.cleanup();
  }
});
