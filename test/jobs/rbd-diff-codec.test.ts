// The rbd diff v1 codec: a stream parses to the same records however it is cut (every split
// point, byte by byte), write data comes out in bounded pieces, and malformed streams fail clearly.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeEnd, encodeHeader, encodeWriteHeader, encodeZero, RbdDiffParser, type DiffEvent } from '../../src/jobs/rbd-diff/index.js';

function sample(): Buffer {
  const data1 = Buffer.from('hello, rbd diff');
  const data2 = Buffer.alloc(300, 7);
  return Buffer.concat([
    encodeHeader({ fromSnap: 'snap-a', toSnap: 'snap-b', size: 1 << 20 }),
    encodeWriteHeader(0, data1.length),
    data1,
    encodeZero(4096, 8192),
    encodeWriteHeader(20_000, data2.length),
    data2,
    encodeEnd(),
  ]);
}

/** Parses `chunks` and merges consecutive data pieces so results compare across cuts. */
function parseAll(chunks: Buffer[]): string[] {
  const parser = new RbdDiffParser();
  const out: string[] = [];
  let data: { offset: number; bytes: Buffer[] } | undefined;
  for (const chunk of chunks) {
    parser.push(chunk);
    for (let e: DiffEvent | undefined = parser.next(); e; e = parser.next()) {
      if (e.kind === 'data') {
        if (!data) data = { offset: e.offset, bytes: [] };
        assert.equal(e.offset, data.offset + Buffer.concat(data.bytes).length, 'pieces are contiguous');
        data.bytes.push(Buffer.from(e.data));
        if (e.last) {
          out.push(`w ${data.offset} ${Buffer.concat(data.bytes).toString('hex')}`);
          data = undefined;
        }
      } else out.push(JSON.stringify(e));
    }
  }
  parser.finish();
  return out;
}

test('rbd diff parser: same records at every split point and byte by byte', () => {
  const stream = sample();
  const whole = parseAll([stream]);
  assert.deepEqual(whole, [
    '{"kind":"from-snap","name":"snap-a"}',
    '{"kind":"to-snap","name":"snap-b"}',
    '{"kind":"size","size":1048576}',
    `w 0 ${Buffer.from('hello, rbd diff').toString('hex')}`,
    '{"kind":"zero","offset":4096,"length":8192}',
    `w 20000 ${Buffer.alloc(300, 7).toString('hex')}`,
    '{"kind":"end"}',
  ]);
  for (let cut = 0; cut <= stream.length; cut++) {
    assert.deepEqual(parseAll([stream.subarray(0, cut), stream.subarray(cut)]), whole, `split at ${cut}`);
  }
  assert.deepEqual(parseAll([...stream].map((b) => Buffer.from([b]))), whole);
});

test('rbd diff parser: a large write record streams out in bounded pieces', () => {
  const size = 16 * 1024 * 1024;
  const parser = new RbdDiffParser();
  parser.push(encodeHeader({ size }));
  parser.push(encodeWriteHeader(0, size));
  for (let i = 0; i < 16; i++) parser.push(Buffer.alloc(1024 * 1024, i));
  parser.push(encodeEnd());
  let largest = 0;
  let total = 0;
  for (let e = parser.next(); e; e = parser.next()) {
    if (e.kind === 'data') {
      largest = Math.max(largest, e.data.length);
      assert.equal(e.data[0], Math.floor(e.offset / (1024 * 1024)));
      total += e.data.length;
    }
  }
  parser.finish();
  assert.equal(total, size);
  assert.ok(largest <= 4 * 1024 * 1024, `piece of ${largest} bytes`);
});

test('rbd diff parser: malformed streams fail with EDIFFFORMAT and a clear message', () => {
  const cases: Array<[Buffer, RegExp]> = [
    [Buffer.from('rbd diff v2\n'), /not an rbd diff v1 stream/],
    [Buffer.concat([encodeHeader({ size: 100 }), encodeZero(90, 20), encodeEnd()]), /ends past the image size 100/],
    [Buffer.concat([Buffer.from('rbd diff v1\n'), encodeZero(0, 1)]), /before the size record/],
    [Buffer.concat([encodeHeader({ size: 100 }), Buffer.from('q')]), /unknown record tag 0x71/],
    [Buffer.concat([encodeHeader({ size: 100 }), encodeZero(50, 10), encodeZero(0, 10)]), /goes back before 60/],
    [Buffer.concat([encodeHeader({ size: 100 }), encodeZero(0, 10), encodeHeader({ size: 1 }).subarray(12)]), /metadata record 's' after data/],
    [Buffer.concat([encodeHeader({ size: 100 }), encodeEnd(), Buffer.from('x')]), /after the end record/],
    [Buffer.concat([encodeHeader({ size: 100 }), encodeWriteHeader(0, 10), Buffer.alloc(5)]), /truncated: no end record/],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(() => parseAll([bytes]), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'EDIFFFORMAT');
      assert.match(err.message, message);
      return true;
    });
  }
});
