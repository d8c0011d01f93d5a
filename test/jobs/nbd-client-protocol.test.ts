// The client's protocol code without sockets: reply frames cut at every byte position parse to
// the same events; impossible lengths are refused before anything is allocated; a hostile
// server's reply fails the request with EIO instead of hanging or crashing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ReplyParser, type ReplyEvent, type SentRequest } from '../../src/nbd/client/reply-parser.js';
import { parseNbdUri } from '../../src/nbd/client/nbd-uri.js';
import { NbdDevice } from '../../src/block/drivers/nbd-device.js';
import { ByteQueue } from '../../src/nbd/protocol/byte-queue.js';
import { CMD_BLOCK_STATUS, CMD_READ, CMD_WRITE, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA } from '../../src/nbd/protocol/constants.js';
import { blockStatusChunk, errorChunk, noneChunk, simpleReply, writeChunkHeader, writeOffsetDataHeader, writeOffsetHole, OFFSET_DATA_OVERHEAD, OFFSET_HOLE_SIZE } from '../../src/nbd/protocol/replies.js';
import { scratchDir } from '../helpers/tools.js';

const requests = new Map<bigint, SentRequest>([
  [1n, { type: CMD_READ, offset: 1000, length: 100 }],
  [2n, { type: CMD_WRITE, offset: 0, length: 10 }],
  [3n, { type: CMD_BLOCK_STATUS, offset: 0, length: 4096 }],
  [4n, { type: CMD_READ, offset: 5000, length: 8 }],
]);

function stream(): Buffer {
  const data = Buffer.allocUnsafe(OFFSET_DATA_OVERHEAD + 60);
  writeOffsetDataHeader(data, 0, 0, 1n, 1000, 60);
  data.fill(0xab, OFFSET_DATA_OVERHEAD);
  const hole = Buffer.allocUnsafe(OFFSET_HOLE_SIZE);
  writeOffsetHole(hole, 0, REPLY_FLAG_DONE, 1n, 1060, 40);
  const simpleRead = simpleReply(4n, 0, 8);
  simpleRead.fill(7, 16);
  return Buffer.concat([
    data,
    simpleReply(2n, 0),
    blockStatusChunk(3n, 0, 1, [{ length: 4096, flags: 3 }]),
    errorChunk(3n, 22, 'bad range'),
    hole,
    simpleRead,
    noneChunk(2n),
  ]);
}

// Payload pieces are views valid until the next call: copied out as they come, then joined
// (a piece that continues the previous one of the same request) so splits compare equal.
function parse(received: Buffer[]): string[] {
  const chunks = received.map((c) => Buffer.from(c));
  const queue = new ByteQueue();
  const parser = new ReplyParser(queue, (cookie) => requests.get(cookie));
  const events: ReplyEvent[] = [];
  for (const chunk of chunks) {
    queue.push(chunk);
    for (let e = parser.next(); e; e = parser.next()) {
      const last = events[events.length - 1];
      if (e.kind === 'data' && last?.kind === 'data' && !last.done && last.cookie === e.cookie && last.offset + last.data.length === e.offset) {
        events[events.length - 1] = { ...last, done: e.done, data: Buffer.concat([last.data, e.data]) };
      } else {
        events.push(e.kind === 'data' ? { ...e, data: Buffer.from(e.data) } : e);
      }
    }
    queue.ownLast();
    chunk.fill(0xee); // the socket reuses its read buffer: nothing may still point into it
  }
  assert.equal(queue.length, 0);
  const show = (e: ReplyEvent): string =>
    JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v instanceof Uint32Array ? [...v] : v));
  return events.map((e) => show(e.kind === 'data' ? ({ ...e, data: e.data.toString('hex') } as unknown as ReplyEvent) : e));
}

test('reply parser: the same events at every split point', () => {
  const bytes = stream();
  const whole = parse([bytes]);
  assert.equal(whole.length, 7);
  assert.match(whole[0]!, /"kind":"data".*"offset":1000.*"data":"(ab){60}"/);
  assert.match(whole[3]!, /"kind":"error".*"error":22.*"message":"bad range"/);
  assert.match(whole[5]!, /"kind":"data","cookie":4,"done":true,"offset":5000,"data":"(07){8}"/);
  for (let cut = 0; cut <= bytes.length; cut++) {
    assert.deepEqual(parse([bytes.subarray(0, cut), bytes.subarray(cut)]), whole, `split at ${cut}`);
  }
  assert.deepEqual(parse([...bytes].map((b) => Buffer.from([b]))), whole, 'one byte at a time');
});

test('reply parser: impossible lengths and unknown cookies are protocol errors', () => {
  const tooMuchData = Buffer.alloc(20);
  writeChunkHeader(tooMuchData, 0, 0, REPLY_TYPE_OFFSET_DATA, 1n, 8 + 101);
  const wrongCommand = Buffer.alloc(20);
  writeChunkHeader(wrongCommand, 0, 0, REPLY_TYPE_OFFSET_DATA, 2n, 8 + 1);
  const huge = Buffer.alloc(20);
  writeChunkHeader(huge, 0, 0, 5, 3n, 0xfffffff0);
  for (const [bytes, message] of [
    [tooMuchData, /length 109, at most 108/],
    [wrongCommand, /at most 0/],
    [huge, /length 4294967280/],
    [simpleReply(99n, 0), /unknown cookie 99/],
    [Buffer.from('garbage!'), /bad reply magic/],
  ] as const) {
    assert.throws(() => parse([bytes]), message);
  }
});

test('NbdDevice: a server that sends an oversized reply fails the request with EIO', async () => {
  const scratch = await scratchDir('fleece-evil-');
  const socket = join(scratch.path, 'evil.sock');
  // A scripted server: a valid handshake, then a data chunk longer than the read asked for.
  const server = createServer((conn) => {
    const greeting = Buffer.alloc(18);
    greeting.write('NBDMAGICIHAVEOPT', 'latin1');
    greeting.writeUInt16BE(3, 16);
    conn.write(greeting);
    let got = Buffer.alloc(0);
    conn.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // client flags (4), then options: answer each by its number until GO (7).
      while (got.length >= 4 + 16) {
        const length = got.readUInt32BE(4 + 12);
        if (got.length < 4 + 16 + length) return;
        const option = got.readUInt32BE(4 + 8);
        got = Buffer.concat([got.subarray(0, 4), got.subarray(4 + 16 + length)]);
        const reply = (type: number, payload = Buffer.alloc(0)): Buffer => {
          const b = Buffer.alloc(20 + payload.length);
          b.writeBigUInt64BE(0x3e889045565a9n, 0);
          b.writeUInt32BE(option, 8);
          b.writeUInt32BE(type, 12);
          b.writeUInt32BE(payload.length, 16);
          payload.copy(b, 20);
          return b;
        };
        if (option === 7) {
          const info = Buffer.alloc(12);
          info.writeBigUInt64BE(1048576n, 2);
          info.writeUInt16BE(1, 10);
          conn.write(Buffer.concat([reply(3, info), reply(1)]));
          conn.removeAllListeners('data');
          conn.on('data', (req: Buffer) => {
            const cookie = req.readBigUInt64BE(8);
            const evil = Buffer.alloc(20);
            writeChunkHeader(evil, 0, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, 8 + 1_000_000);
            conn.write(evil);
          });
          return;
        }
        conn.write(reply(option === 8 ? 1 : 0x80000001));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  try {
    const device = await NbdDevice.open(`nbd+unix:///?socket=${socket}`);
    assert.equal(device.size, 1048576);
    await assert.rejects(device.read(0, Buffer.alloc(4096)), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'EIO');
      assert.match(err.message, /broke the protocol.*length 1000008, at most 4104/);
      return true;
    });
    await device.close();
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await scratch.cleanup();
  }
});

test('NBD URIs: tcp with default port, IPv6, unix sockets, and clear errors', () => {
  assert.deepEqual(parseNbdUri('nbd://example.org/disk%201'), { kind: 'tcp', host: 'example.org', port: 10809, exportName: 'disk 1' });
  assert.deepEqual(parseNbdUri('nbd://[::1]:1234/'), { kind: 'tcp', host: '::1', port: 1234, exportName: '' });
  assert.deepEqual(parseNbdUri('nbd+unix:///vm?socket=/run/x.sock'), { kind: 'unix', path: '/run/x.sock', exportName: 'vm' });
  assert.throws(() => parseNbdUri('nbd+unix:///vm'), /has no \?socket=PATH/);
  assert.throws(() => parseNbdUri('nbds://h/x'), /unsupported nbd uri scheme 'nbds:'/);
});

test('NbdDevice: a server that never finishes the handshake times out clearly', async () => {
  const scratch = await scratchDir('fleece-silent-');
  const socket = join(scratch.path, 'silent.sock');
  const server = createServer(() => {}); // accepts, says nothing
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  try {
    await assert.rejects(NbdDevice.open(`nbd+unix:///?socket=${socket}`, { handshakeTimeoutMs: 200 }), /did not finish the handshake within 200 ms/);
  } finally {
    server.close();
    await scratch.cleanup();
  }
});
