// The native writer thread behind RawFileDevice's page-aligned writes: every byte lands where it
// was sent, errors come back as errno codes, closed handles refuse work, and a write still queued
// keeps the process alive until it is done (as libuv's own fs requests do).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileWriter } from '../../src/block/drivers/file-writer.js';
import { RawFileDevice } from '../../src/block/drivers/raw-file-device.js';
import { loadNative, type WriterHandle } from '../../src/core/native.js';
import { scratchDir } from '../helpers/tools.js';

test('FileWriter: hundreds of concurrent writes land byte for byte; errors carry the errno code', async () => {
  const dir = await scratchDir('fleece-writer-');
  const path = join(dir.path, 'file');
  const writer = new FileWriter(loadNative());
  const fd = openSync(path, 'w+');
  try {
    const blocks = 512;
    const expected = randomBytes(blocks * 4096);
    // Written out of order, in pieces of 1-3 pages, all queued at once.
    const order = Array.from({ length: blocks / 2 }, (_, i) => (i * 97) % (blocks / 2));
    await Promise.all(order.map((piece) => {
      const start = piece * 2 * 4096;
      return writer.write(fd, expected.subarray(start, start + 2 * 4096), start);
    }));
    assert.equal(writer.queued, 0);
    assert.ok(readFileSync(path).equals(expected), 'file content equals what was written');

    const readOnly = openSync(path, 'r');
    try {
      await assert.rejects(writer.write(readOnly, Buffer.alloc(4096), 0), (err: { code?: string; syscall?: string }) => err.code === 'EBADF' && err.syscall === 'pwrite');
    } finally {
      closeSync(readOnly);
    }
    // The writer keeps working after an error.
    await writer.write(fd, Buffer.alloc(4096, 0xab), 4096);
    assert.ok(readFileSync(path).subarray(4096, 8192).equals(Buffer.alloc(4096, 0xab)));
  } finally {
    writer.close();
    closeSync(fd);
    await dir.cleanup();
  }
});

test('native writer: bad handles and closed writers are refused with clear errors', () => {
  const native = loadNative();
  const handle = native.createWriter(() => undefined);
  assert.throws(() => native.writerSubmit({} as WriterHandle, 0, Buffer.alloc(1), 0, 1), TypeError);
  assert.throws(() => native.writerSubmit(handle, -1, Buffer.alloc(1), 0, 1), RangeError);
  assert.throws(() => native.writerSubmit(handle, 0, 'x' as unknown as Buffer, 0, 1), TypeError);
  assert.throws(() => native.writerSubmit(handle, 0, Buffer.alloc(1), 2 ** 53, 1), RangeError);
  native.writerClose(handle);
  assert.throws(() => native.writerSubmit(handle, 0, Buffer.alloc(1), 0, 1), (err: { code?: string }) => err.code === 'ECLOSED');
  assert.throws(() => native.writerClose(handle), (err: { code?: string }) => err.code === 'ECLOSED');
  assert.throws(() => native.createWriter('x' as unknown as () => void), TypeError);
});

test('native writer: a queued write keeps the process alive until it is done; an idle writer does not', async () => {
  const dir = await scratchDir('fleece-writer-');
  try {
    const path = join(dir.path, 'file');
    const nativeModule = fileURLToPath(new URL('../../src/core/native.js', import.meta.url));
    // The script ends right after submitting: only the pending write keeps the loop running.
    const script = `
      import { openSync } from 'node:fs';
      import { loadNative } from ${JSON.stringify(nativeModule)};
      const native = loadNative();
      const idle = native.createWriter(() => {});
      const writer = native.createWriter((id, err) => { console.log('done', id, err === null); });
      native.writerSubmit(writer, openSync(${JSON.stringify(path)}, 'w'), Buffer.alloc(1 << 20, 0x5a), 4096, 42);
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout.trim(), 'done 42 true');
    const written = readFileSync(path);
    assert.equal(written.length, 4096 + (1 << 20));
    assert.ok(written.subarray(4096).equals(Buffer.alloc(1 << 20, 0x5a)));
  } finally {
    await dir.cleanup();
  }
});

test('RawFileDevice: aligned writes beyond the writer queue overflow to the pool, unaligned ones use it; all land', async () => {
  const dir = await scratchDir('fleece-writer-');
  const path = join(dir.path, 'disk.img');
  const size = 8 * 1024 * 1024;
  const expected = Buffer.alloc(size);
  writeFileSync(path, expected);
  const device = await RawFileDevice.open(path);
  try {
    const writes: Promise<void>[] = [];
    // 1024 aligned 4 KiB writes at once (far more than the writer queues) over the first half,
    // each block once; unaligned writes into the second half between them.
    for (let i = 0; i < 1024; i++) {
      const block = randomBytes(4096);
      const offset = ((i * 769) % 1024) * 4096;
      block.copy(expected, offset);
      writes.push(device.write(offset, block));
      if (i % 16 === 0) {
        const odd = randomBytes(1000);
        const at = size / 2 + i * 4096 + 123;
        odd.copy(expected, at);
        writes.push(device.write(at, odd));
      }
    }
    await Promise.all(writes);
    const back = Buffer.alloc(size);
    await device.read(0, back);
    assert.ok(back.equals(expected), 'device reads back every write');
    await device.close();
    assert.ok(readFileSync(path).equals(expected), 'the file holds every write');
  } finally {
    await device.close();
    await dir.cleanup();
  }
});
