// The addon's buffer helpers and the CRC32 the repository format relies on: page-aligned views
// really start at a page boundary, copyInto copies between shared buffers and refuses to overrun,
// and the fast CRC32 gives zlib's values (stored packs and manifests carry them); writeBack
// leaves a file's data on disk and out of the page cache.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { loadNative } from '../../src/core/native.js';
import { pageAlignedBuffer } from '../../src/core/page-aligned.js';
import { crc32 } from '../../src/repo/crc32.js';
import { requireTools, scratchDir } from '../helpers/tools.js';

test('pageAlignedBuffer: views start at a page boundary, shared or not', () => {
  const native = loadNative();
  for (const shared of [true, false]) {
    for (const length of [1, 4096, 65536, 4 * 1024 * 1024 + 3]) {
      const buf = pageAlignedBuffer(length, shared);
      assert.equal(buf.length, length);
      assert.equal(native.pageOffset(buf), 0, `${length} bytes, shared=${shared}`);
      assert.equal(buf.buffer instanceof SharedArrayBuffer, shared);
    }
  }
  assert.equal(native.pageOffset(pageAlignedBuffer(8192, false).subarray(100)), 100);
});

test('copyInto: copies between shared buffers, never past the target', () => {
  const native = loadNative();
  const source = Buffer.from(new SharedArrayBuffer(70_000));
  source.set(randomBytes(source.length));
  const target = Buffer.from(new SharedArrayBuffer(80_000));
  native.copyInto(target.subarray(123), source.subarray(5));
  assert.ok(target.subarray(123, 123 + source.length - 5).equals(source.subarray(5)));
  assert.ok(target.subarray(0, 123).every((b) => b === 0), 'bytes before the target untouched');
  assert.ok(target.subarray(123 + source.length - 5).every((b) => b === 0), 'bytes after the copy untouched');
  assert.throws(() => native.copyInto(target.subarray(0, 10), source.subarray(0, 11)), RangeError);
  assert.throws(() => native.copyInto(target, 'not a buffer' as unknown as Buffer), TypeError);
});

test('crc32: the values of zlib.crc32, at every length and alignment', () => {
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  const data = randomBytes(200_000);
  for (const [start, length] of [[0, 0], [0, 1], [3, 7], [1, 63], [5, 64], [7, 1000], [0, 65536], [9, 65_537], [0, 200_000]] as const) {
    const view = data.subarray(start, start + length);
    assert.equal(crc32(view), zlibCrc32(view), `${start}+${length}`);
  }
});

/** Bytes of the file in the page cache (fincore from util-linux). */
function cachedBytes(path: string): number {
  const result = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return Number(result.stdout.trim());
}

test('writeBack: the data stays, the cached pages go; a bad fd is an EBADF rejection', async () => {
  requireTools('fincore');
  const dir = await scratchDir();
  try {
    const path = join(dir.path, 'image');
    const data = randomBytes(8 * 1024 * 1024);
    const file = await open(path, 'w+');
    try {
      await file.write(data, 0, data.length, 0);
      assert.ok(cachedBytes(path) >= data.length / 2, 'written pages are cached before');
      await loadNative().writeBack(file.fd);
      assert.equal(cachedBytes(path), 0);
    } finally {
      await file.close();
    }
    assert.ok((await readFile(path)).equals(data));
    await assert.rejects(loadNative().writeBack(1_000_000), { code: 'EBADF' });
  } finally {
    await dir.cleanup();
  }
});
