// Interop with libnbd's clients: nbdinfo (--json, --can for every capability, --map, --list)
// and nbdcopy both ways, against exports whose capabilities the test chooses.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { requireTools, run, runOk } from '../helpers/tools.js';
import { RecordingDevice, patternBytes, startTestServer, type TestServer } from './helpers.js';

const MiB = 1024 * 1024;
const ALL_ON = { canFlush: true, canFua: true, canTrim: true, canZero: true, canFastZero: true, canCache: true, canMultiConn: true };
const ALL_OFF = { canFlush: false, canFua: false, canTrim: false, canZero: false, canFastZero: false, canCache: false, canMultiConn: false };
let srv: TestServer;
const sparse = new MemoryDevice(16 * MiB);
const copyTarget = new MemoryDevice(16 * MiB);

before(async () => {
  requireTools('nbdinfo', 'nbdcopy', 'cmp');
  await sparse.write(2 * MiB, patternBytes(MiB, 7));
  await sparse.write(10 * MiB, patternBytes(128 * 1024, 8));
  srv = await startTestServer([
    { name: 'all', device: new RecordingDevice(4 * MiB, ALL_ON), description: 'every capability' },
    { name: 'none', device: new RecordingDevice(4 * MiB, ALL_OFF) },
    { name: 'ro', device: new RecordingDevice(4 * MiB, ALL_ON), readOnly: true },
    { name: 'sparse', device: sparse },
    { name: 'copy', device: copyTarget },
  ]);
});
after(() => srv.stop());

async function can(cap: string, name: string): Promise<boolean> {
  const { code, stderr } = await run('nbdinfo', ['--can', cap, srv.uri(name)]);
  assert.ok(code === 0 || code === 2, `nbdinfo --can ${cap} failed: ${stderr}`);
  return code === 0;
}

test('nbdinfo --can reports each capability as the device declares it', async () => {
  const caps = ['flush', 'fua', 'trim', 'zero', 'fast-zero', 'cache', 'multi-conn', 'write'];
  for (const cap of caps) {
    assert.equal(await can(cap, 'all'), true, `all: ${cap}`);
    assert.equal(await can(cap, 'none'), cap === 'write', `none: ${cap}`);
  }
  for (const cap of ['connect', 'read', 'df', 'structured-reply']) {
    assert.equal(await can(cap, 'none'), true, `none: ${cap}`);
  }
  // A read-only export keeps flush/cache/multi-conn but announces no way of writing.
  const ro: Record<string, boolean> = {};
  for (const cap of caps) ro[cap] = await can(cap, 'ro');
  assert.deepEqual(ro, { flush: true, fua: false, trim: false, zero: false, 'fast-zero': false, cache: true, 'multi-conn': true, write: false });
  assert.equal((await run('nbdinfo', ['--is', 'read-only', srv.uri('ro')])).code, 0);
  assert.equal((await run('nbdinfo', ['--is', 'read-only', srv.uri('all')])).code, 2);
});

test('nbdinfo --json describes the export', async () => {
  const info = JSON.parse(await runOk('nbdinfo', ['--json', srv.uri('all')])) as {
    protocol: string;
    structured: boolean;
    exports: Record<string, unknown>[];
  };
  assert.equal(info.protocol, 'newstyle-fixed');
  assert.equal(info.structured, true);
  const exp = info.exports[0]!;
  assert.equal(exp['export-name'], 'all');
  assert.equal(exp['description'], 'every capability');
  assert.equal(exp['export-size'], 4 * MiB);
  assert.deepEqual(exp['contexts'], ['base:allocation']);
  assert.equal(exp['block_size_minimum'], 1);
  assert.equal(exp['block_size_preferred'], 4096);
  assert.equal(exp['block_size_maximum'], 32 * MiB);
  assert.equal(exp['is_read_only'], false);
});

test('the default export name resolves to the first export', async () => {
  const info = JSON.parse(await runOk('nbdinfo', ['--json', `nbd+unix:///?socket=${srv.socket}`])) as { exports: Record<string, unknown>[] };
  assert.equal(info.exports[0]!['export-size'], 4 * MiB);
});

test('nbdinfo --map reports the written data and the holes', async () => {
  const out = await runOk('nbdinfo', ['--map', '--json', srv.uri('sparse')]);
  const map = (JSON.parse(out) as { offset: number; length: number; type: number }[]).map((e) => [e.offset, e.length, e.type]);
  assert.deepEqual(map, [
    [0, 2 * MiB, 3],
    [2 * MiB, MiB, 0],
    [3 * MiB, 7 * MiB, 3],
    [10 * MiB, 128 * 1024, 0],
    [10 * MiB + 128 * 1024, 6 * MiB - 128 * 1024, 3],
  ]);
});

test('nbdinfo --list shows every export', async () => {
  const out = await runOk('nbdinfo', ['--list', '--json', srv.uri('all')]);
  const names = (JSON.parse(out) as { exports: { 'export-name': string }[] }).exports.map((e) => e['export-name']);
  assert.deepEqual(names, ['all', 'none', 'ro', 'sparse', 'copy']);
});

test('nbdcopy from a file to an export and back gives identical bytes', async () => {
  const source = join(srv.dir, 'source.raw');
  const data = Buffer.concat([patternBytes(3 * MiB, 11), Buffer.alloc(5 * MiB), patternBytes(8 * MiB - 4096, 12), Buffer.alloc(4096)]);
  await writeFile(source, data);
  await runOk('nbdcopy', [source, srv.uri('copy')]);
  const onDevice = Buffer.alloc(16 * MiB);
  await copyTarget.read(0, onDevice);
  assert.ok(onDevice.equals(data), 'export holds the source bytes');
  const back = join(srv.dir, 'back.raw');
  await runOk('nbdcopy', ['--connections=4', '--requests=16', srv.uri('copy'), back]);
  await runOk('cmp', [source, back]);
  assert.ok((await readFile(back)).equals(data));
});
