import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../../src/core/errors.js';
import { formatSize, isPowerOfTwo, parseSize } from '../../src/core/size.js';

test('parseSize accepts bytes and binary units', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('64K'), 65536);
  assert.equal(parseSize('10G'), 10 * 2 ** 30);
  assert.equal(parseSize('1.5M'), 1.5 * 2 ** 20);
  assert.equal(parseSize('2TiB'), 2 * 2 ** 40);
});

test('parseSize rejects garbage and quotes it', () => {
  assert.throws(() => parseSize('ten gigs'), (e: unknown) => e instanceof UsageError && /'ten gigs'/.test(e.message));
  assert.throws(() => parseSize('1.3'), UsageError);
  assert.throws(() => parseSize('-5K'), UsageError);
});

test('formatSize and isPowerOfTwo', () => {
  assert.equal(formatSize(1536), '1.50 KiB');
  assert.equal(formatSize(512), '512 B');
  assert.ok(isPowerOfTwo(65536) && isPowerOfTwo(1) && isPowerOfTwo(2 ** 40));
  assert.ok(!isPowerOfTwo(0) && !isPowerOfTwo(3) && !isPowerOfTwo(65535));
});
