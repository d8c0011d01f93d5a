// Interop with QEMU's NBD client: qemu-io writes (FUA, zeroes, fast zero, discard) read back
// by pattern, qemu-img map of a sparse export, convert/compare, and qemu-nbd -L listing.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { requireTools, run, runOk } from '../helpers/tools.js';
import { RecordingDevice, patternBytes, startTestServer, type TestServer } from './helpers.js';

const MiB = 1024 * 1024;
let srv: TestServer;
const device = new RecordingDevice(64 * MiB, { canFua: true, canFlush: true, canFastZero: true });
const sparse = new MemoryDevice(32 * MiB);
const target = new MemoryDevice(32 * MiB);

before(async () => {
  requireTools('qemu-io', 'qemu-img', 'qemu-nbd');
  // sparse: data at [1 MiB, 1.5 MiB) and [8 MiB, 8 MiB + 64 KiB), the rest a hole.
  await sparse.write(1 * MiB, patternBytes(512 * 1024, 1));
  await sparse.write(8 * MiB, patternBytes(64 * 1024, 2));
  srv = await startTestServer([
    { name: 'disk', device, description: 'the disk under test' },
    { name: 'sparse', device: sparse },
    { name: 'target', device: target },
    { name: 'ro', device: sparse, readOnly: true },
  ]);
});
after(() => srv.stop());

// Writeback cache: qemu-io's default writethrough would turn every write into FUA.
async function qemuIo(uri: string, ...commands: string[]): Promise<string> {
  const args = ['-f', 'raw', '-t', 'writeback', ...commands.flatMap((c) => ['-c', c]), uri];
  const result = await run('qemu-io', args);
  const out = result.stdout + result.stderr;
  assert.equal(result.code, 0, out);
  assert.doesNotMatch(out, /Pattern verification failed|error|failed/i, out);
  return out;
}

test('qemu-io writes with and without FUA, zeroes, fast zero and discard read back as written', async () => {
  device.calls.length = 0;
  await qemuIo(
    srv.uri('disk'),
    'write -P 0xab 0 1M',
    'write -f -P 0xcd 1M 1M',
    'write -P 0x11 2M 1M',
    'write -z 2M 512k',
    'write -P 0x22 3M 1M',
    'write -z -u 3M 1M',
    'write -P 0x33 4M 1M',
    'write -z -n 4M 1M',
    'write -P 0x44 5M 1M',
    'discard 5M 1M',
    'write -P 0x55 6M 12345',
    'flush',
  );
  await qemuIo(
    srv.uri('disk'),
    'read -P 0xab 0 1M',
    'read -P 0xcd 1M 1M',
    'read -P 0 2M 512k',
    'read -P 0x11 2621440 512k',
    'read -P 0 3M 1M',
    'read -P 0 4M 1M',
    'read -P 0x55 6M 12345',
    'read -P 0 6303961 100',
  );
  const writes = device.calls.filter((c) => c.op === 'write');
  assert.ok(writes.some((c) => c.offset === MiB && c.fua), 'the -f write reached the device with fua');
  assert.ok(writes.some((c) => c.offset === 0 && !c.fua), 'the plain write reached the device without fua');
  const zeroes = device.calls.filter((c) => c.op === 'writeZeroes');
  assert.ok(zeroes.some((c) => c.offset === 2 * MiB && !c.mayTrim), 'write -z without -u forbids trimming');
  assert.ok(zeroes.some((c) => c.offset === 3 * MiB && c.mayTrim), 'write -z -u allows trimming');
  assert.ok(zeroes.some((c) => c.offset === 4 * MiB && c.fastZero), 'write -z -n asks for a fast zero');
  assert.ok(device.calls.some((c) => c.op === 'discard' && c.offset === 5 * MiB && c.length === MiB));
  assert.ok(device.calls.some((c) => c.op === 'flush'));
  // The device agrees with what qemu-io read.
  const back = Buffer.alloc(MiB);
  await device.read(MiB, back);
  assert.ok(back.every((b) => b === 0xcd));
});

test('qemu-img map reports the data and hole layout of a sparse export', async () => {
  const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', srv.uri('sparse')])) as {
    start: number;
    length: number;
    data: boolean;
    zero: boolean;
  }[];
  const data = map.filter((e) => e.data).map((e) => [e.start, e.length]);
  assert.deepEqual(data, [
    [1 * MiB, 512 * 1024],
    [8 * MiB, 64 * 1024],
  ]);
  assert.ok(map.filter((e) => !e.data).every((e) => e.zero), 'holes read as zero');
  assert.equal(map.reduce((sum, e) => sum + e.length, 0), 32 * MiB);
});

test('qemu-img convert to and from the server, then qemu-img compare', async () => {
  const local = join(srv.dir, 'copy.raw');
  await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.uri('sparse'), local]);
  const expected = Buffer.alloc(32 * MiB);
  await sparse.read(0, expected);
  assert.ok((await readFile(local)).equals(expected), 'converted file equals the export');
  await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', local, srv.uri('target')]);
  const copied = Buffer.alloc(32 * MiB);
  await target.read(0, copied);
  assert.ok(copied.equals(expected), 'converted export equals the file');
  const same = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', local, srv.uri('target')]);
  assert.equal(same.code, 0, same.stdout + same.stderr);
  await writeFile(join(srv.dir, 'differs.raw'), Buffer.alloc(32 * MiB, 1));
  const differs = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', join(srv.dir, 'differs.raw'), srv.uri('target')]);
  assert.equal(differs.code, 1, 'compare notices a difference');
});

test('qemu-nbd -L lists every export with its description', async () => {
  const out = await runOk('qemu-nbd', ['-L', '-k', srv.socket]);
  assert.match(out, /exports available: 4/);
  for (const name of ['disk', 'sparse', 'target', 'ro']) assert.match(out, new RegExp(`export: '${name}'`));
  assert.match(out, /description: the disk under test/);
  assert.match(out, /base:allocation/);
});

test('qemu-io on a read-only export reads but cannot open it for writing', async () => {
  const write = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', srv.uri('ro')]);
  assert.notEqual(write.code, 0);
  assert.match(write.stdout + write.stderr, /Permission denied|read-only/i);
  const read = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0 0 1M', '-c', 'read -P 0 1536k 6656k', srv.uri('ro')]);
  assert.equal(read.code, 0, read.stderr);
  assert.doesNotMatch(read.stdout + read.stderr, /Pattern verification failed|error|failed/i);
});
