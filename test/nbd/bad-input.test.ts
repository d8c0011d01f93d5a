// Hostile and broken clients: wrong magic, impossible lengths, half frames, unknown options,
// commands and flags, disconnects mid-request, failing devices. The server answers per spec or
// closes that one connection; it never crashes and keeps serving everybody else.

import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlockDevice } from '../../src/block/block-device.js';
import { BlockError } from '../../src/block/errors.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import * as C from '../../src/nbd/protocol/constants.js';
import { patternBytes, startTestServer, type TestServer } from './helpers.js';
import { RawClient } from './raw-client.js';

const MiB = 1024 * 1024;
let srv: TestServer;
const disk = new MemoryDevice(64 * MiB);
const reference = patternBytes(4096, 42);

/** A device whose reads of the first MiB fail with EIO (a broken medium). */
function failingDevice(): BlockDevice {
  const inner = new MemoryDevice(8 * MiB);
  return Object.assign(Object.create(inner) as BlockDevice, {
    capabilities: inner.capabilities,
    size: inner.size,
    read: async (offset: number, target: Uint8Array) => {
      if (offset < MiB) throw new BlockError('EIO', `read: medium error at ${offset}`);
      return inner.read(offset, target);
    },
    blockStatus: (offset: number, length: number) => inner.blockStatus(offset, length),
  });
}

before(async () => {
  await disk.write(0, reference);
  srv = await startTestServer([
    { name: 'disk', device: disk },
    { name: 'broken', device: failingDevice() },
  ]);
});
after(() => srv.stop());

/** After every test: a well-behaved client is still served and no connection leaked. */
afterEach(async () => {
  const c = await RawClient.connect(srv.socket);
  await c.handshake('disk');
  c.sendRequest(C.CMD_READ, 77n, 0, 4096);
  assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 77n });
  assert.ok((await c.read(4096)).equals(reference), 'a healthy client reads correct data');
  c.sendRequest(C.CMD_DISC, 78n, 0, 0);
  await c.closed;
  for (let i = 0; i < 100 && srv.server.connectionCount > 0; i++) await sleep(20);
  assert.equal(srv.server.connectionCount, 0, 'every connection was cleaned up');
});

test('wrong magic in the handshake closes that connection', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.greet();
  c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await c.closed;
});

test('unknown client flags close the connection', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.greet(0x80);
  await c.closed;
});

test('wrong request magic in transmission closes that connection', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.handshake('disk');
  c.write(Buffer.alloc(28, 0xff));
  await c.closed;
});

test('a 4 GiB write length is refused with EINVAL and the connection closed, without allocating it', async () => {
  const rss = process.memoryUsage().rss;
  const c = await RawClient.connect(srv.socket);
  await c.handshake('disk');
  const started = Date.now();
  c.sendRequest(C.CMD_WRITE, 5n, 0, 0xffffffff, { payload: Buffer.alloc(1000) });
  assert.deepEqual(await c.simpleReply(), { error: C.NBD_EINVAL, cookie: 5n });
  await c.closed;
  assert.ok(Date.now() - started < 2000, 'answered and closed at once');
  assert.ok(process.memoryUsage().rss - rss < 256 * MiB, 'no 4 GiB buffer');
});

test('a write just over the maximum payload is refused, its payload skipped, the session goes on', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.handshake('disk');
  c.sendRequest(C.CMD_WRITE, 6n, 0, 40 * MiB, { payload: Buffer.alloc(40 * MiB, 0xee) });
  assert.deepEqual(await c.simpleReply(), { error: C.NBD_EINVAL, cookie: 6n });
  c.sendRequest(C.CMD_READ, 7n, 0, 4096);
  assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 7n });
  assert.ok((await c.read(4096)).equals(reference), 'the oversized write changed nothing');
  c.destroy();
});

test('unknown options get ERR_UNSUP and haggling goes on; STARTTLS and bad GO data are refused', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.greet();
  c.sendOption(12345, Buffer.from('whatever'));
  assert.equal((await c.optionReply()).type, C.REP_ERR_UNSUP);
  c.sendOption(C.OPT_STARTTLS);
  assert.equal((await c.optionReply()).type, C.REP_ERR_POLICY);
  c.sendOption(C.OPT_GO, Buffer.from([0, 0, 0, 99, 1]));
  assert.equal((await c.optionReply()).type, C.REP_ERR_INVALID);
  c.sendOption(C.OPT_SET_META_CONTEXT, Buffer.alloc(8));
  assert.equal((await c.optionReply()).type, C.REP_ERR_INVALID, 'meta contexts need structured replies first');
  const unknown = Buffer.alloc(4 + 4 + 2);
  unknown.writeUInt32BE(4, 0);
  unknown.write('nope', 4);
  c.sendOption(C.OPT_INFO, unknown);
  const reply = await c.optionReply();
  assert.equal(reply.type, C.REP_ERR_UNKNOWN);
  assert.match(reply.data.toString(), /unknown export 'nope'/);
  c.sendOption(C.OPT_ABORT);
  assert.equal((await c.optionReply()).type, C.REP_ACK);
  await c.closed;
});

test('an unknown export via NBD_OPT_EXPORT_NAME ends the session (no way to report it)', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.greet();
  c.sendOption(C.OPT_EXPORT_NAME, Buffer.from('missing'));
  await c.closed;
});

test('unknown commands and flags get EINVAL without dropping the connection', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.handshake('disk', true);
  c.sendRequest(99, 1n, 0, 0);
  const unknown = await c.chunk();
  assert.equal(unknown.type, C.REPLY_TYPE_ERROR);
  assert.equal(unknown.payload.readUInt32BE(0), C.NBD_EINVAL);
  c.sendRequest(C.CMD_READ, 2n, 0, 4096, { flags: 0x8000 });
  const badFlag = await c.chunk();
  assert.equal(badFlag.type, C.REPLY_TYPE_ERROR, 'a READ error is a structured chunk once negotiated');
  assert.equal(badFlag.payload.readUInt32BE(0), C.NBD_EINVAL);
  c.sendRequest(C.CMD_BLOCK_STATUS, 3n, 0, 4096);
  const noContext = await c.chunk();
  assert.equal(noContext.payload.readUInt32BE(0), C.NBD_EINVAL, 'block status without a selected context');
  c.sendRequest(C.CMD_READ, 4n, 2 ** 60, 4096);
  assert.equal((await c.chunk()).payload.readUInt32BE(0), C.NBD_EINVAL, 'offset beyond 2^53');
  c.sendRequest(C.CMD_READ, 5n, 0, 4096);
  const ok = await c.chunk();
  assert.equal(ok.type, C.REPLY_TYPE_OFFSET_DATA);
  assert.ok(ok.payload.subarray(8).equals(reference));
  c.destroy();
});

test('truncated frames and disconnects mid-request end only that connection', async () => {
  const half = await RawClient.connect(srv.socket);
  await half.handshake('disk');
  half.write(Buffer.alloc(13, 0x25));
  half.destroy();

  const midPayload = await RawClient.connect(srv.socket);
  await midPayload.handshake('disk');
  midPayload.sendRequest(C.CMD_WRITE, 1n, 0, MiB, { payload: Buffer.alloc(1000) });
  midPayload.destroy();

  const midRead = await RawClient.connect(srv.socket);
  await midRead.handshake('disk');
  for (let i = 0; i < 16; i++) midRead.sendRequest(C.CMD_READ, BigInt(i), 0, 32 * MiB);
  midRead.destroy();

  const midHandshake = await RawClient.connect(srv.socket);
  await midHandshake.greet();
  midHandshake.write(Buffer.from('IHAVE'));
  midHandshake.destroy();
  const data = Buffer.alloc(4096);
  await disk.read(0, data);
  assert.ok(data.equals(reference), 'the half-sent write was never applied');
});

test('a failing device gives EIO replies and the connection stays usable', async () => {
  const c = await RawClient.connect(srv.socket);
  await c.handshake('broken', true);
  c.sendRequest(C.CMD_READ, 1n, 0, 4096, { flags: C.CMD_FLAG_DF });
  const err = await c.chunk();
  assert.equal(err.type, C.REPLY_TYPE_ERROR);
  assert.equal(err.flags & C.REPLY_FLAG_DONE, C.REPLY_FLAG_DONE);
  assert.equal(err.payload.readUInt32BE(0), C.NBD_EIO);
  assert.match(err.payload.subarray(6).toString(), /medium error/);
  c.sendRequest(C.CMD_READ, 2n, 2 * MiB, 4096);
  const ok = await c.chunk();
  assert.equal(ok.cookie, 2n);
  assert.equal(ok.flags & C.REPLY_FLAG_DONE, C.REPLY_FLAG_DONE);
  c.destroy();
});
