// The codec without sockets: request and option streams cut at every byte position parse to
// the same frames, lengths are validated before allocation, replies have the spec's layout.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlockError } from '../../src/block/errors.js';
import { ByteQueue } from '../../src/nbd/protocol/byte-queue.js';
import * as C from '../../src/nbd/protocol/constants.js';
import { nbdErrnoFor } from '../../src/nbd/protocol/errno.js';
import { HandshakeParser, parseInfoRequest, parseMetaContextRequest, type HandshakeEvent } from '../../src/nbd/protocol/handshake.js';
import { blockStatusChunk, errorChunk, noneChunk, simpleReply, writeOffsetDataHeader, writeOffsetHole } from '../../src/nbd/protocol/replies.js';
import { RequestParser, type NbdRequest } from '../../src/nbd/protocol/request-parser.js';
import { matchContexts } from '../../src/nbd/server/meta-context.js';

function request(type: number, flags: number, cookie: bigint, offset: number, length: number, payload?: Buffer): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(C.REQUEST_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(cookie, 8);
  header.writeBigUInt64BE(BigInt(offset), 16);
  header.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([header, payload]) : header;
}

function option(opt: number, data: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(C.IHAVEOPT, 0);
  header.writeUInt32BE(opt, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

function parseAll(chunks: Buffer[], maxPayload = 1 << 20): NbdRequest[] {
  const queue = new ByteQueue();
  const parser = new RequestParser(queue, { maxPayload });
  const out: NbdRequest[] = [];
  for (const chunk of chunks) {
    queue.push(chunk);
    for (let r = parser.next(); r; r = parser.next()) out.push(r);
  }
  return out;
}

const simplify = (r: NbdRequest) => ({ ...r, data: r.data?.toString('hex') });

test('a request stream split at every byte position parses to the same requests', () => {
  const payload = Buffer.from([...Array(300).keys()].map((i) => i & 0xff));
  const stream = Buffer.concat([
    request(C.CMD_READ, 0, 1n, 4096, 512),
    request(C.CMD_WRITE, C.CMD_FLAG_FUA, 0xffffffffffffffffn, 2 ** 40, payload.length, payload),
    request(C.CMD_WRITE, 0, 3n, 0, 0, Buffer.alloc(0)),
    request(C.CMD_BLOCK_STATUS, C.CMD_FLAG_REQ_ONE, 4n, 0, 65536),
    request(C.CMD_DISC, 0, 5n, 0, 0),
  ]);
  const expected = parseAll([stream]).map(simplify);
  assert.equal(expected.length, 5);
  assert.deepEqual(expected[1], {
    flags: C.CMD_FLAG_FUA, type: C.CMD_WRITE, cookie: 0xffffffffffffffffn, offset: 2 ** 40, length: 300,
    data: payload.toString('hex'), rejected: 0, disconnect: false,
  });
  for (let cut = 1; cut < stream.length; cut++) {
    assert.deepEqual(parseAll([stream.subarray(0, cut), stream.subarray(cut)]).map(simplify), expected, `cut at ${cut}`);
  }
  for (let cut = 1; cut < stream.length; cut += 7) {
    // Three pieces, and byte-by-byte for good measure.
    const pieces = [stream.subarray(0, cut), stream.subarray(cut, cut + 13), stream.subarray(cut + 13)];
    assert.deepEqual(parseAll(pieces).map(simplify), expected, `cuts at ${cut}, ${cut + 13}`);
  }
  assert.deepEqual(parseAll([...stream].map((b) => Buffer.from([b]))).map(simplify), expected);
});

test('a write payload split across chunks is copied once into a buffer of exactly its size', () => {
  const payload = Buffer.alloc(10000, 7);
  const stream = request(C.CMD_WRITE, 0, 9n, 0, payload.length, payload);
  const [req] = parseAll([stream.subarray(0, 5000), stream.subarray(5000)]);
  assert.equal(req!.data!.length, 10000);
  assert.equal(req!.data!.buffer.byteLength >= 10000, true);
  assert.ok(req!.data!.equals(payload));
});

test('wrong request magic throws and poisons the parser', () => {
  const queue = new ByteQueue();
  const parser = new RequestParser(queue, { maxPayload: 1024 });
  const bad = request(C.CMD_READ, 0, 1n, 0, 512);
  bad.writeUInt32BE(0xdeadbeef, 0);
  queue.push(bad);
  assert.throws(() => parser.next(), { code: 'ENBDPROTO', message: /0xdeadbeef/ });
  assert.throws(() => parser.next(), { code: 'ENBDPROTO' });
});

test('an oversized write is refused without allocating: skipped when small, fatal when huge', () => {
  const queue = new ByteQueue();
  const parser = new RequestParser(queue, { maxPayload: 1024, maxSkip: 4096 });
  queue.push(request(C.CMD_WRITE, 0, 1n, 0, 2048));
  const refused = parser.next()!;
  assert.equal(refused.rejected, C.NBD_EINVAL);
  assert.equal(refused.disconnect, false);
  assert.equal(refused.data, undefined);
  queue.push(Buffer.alloc(2000));
  assert.equal(parser.next(), undefined, 'still skipping');
  queue.push(Buffer.concat([Buffer.alloc(48), request(C.CMD_FLUSH, 0, 2n, 0, 0)]));
  assert.equal(parser.next()!.cookie, 2n, 'the stream resumes after the skipped payload');

  const huge = new RequestParser(queue, { maxPayload: 1024 });
  const before = process.memoryUsage().arrayBuffers;
  queue.push(request(C.CMD_WRITE, 0, 3n, 0, 0xffffffff));
  const r = huge.next()!;
  assert.equal(r.rejected, C.NBD_EINVAL);
  assert.equal(r.disconnect, true);
  assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'no 4 GiB buffer was allocated');
  assert.throws(() => huge.next(), { code: 'ENBDPROTO' });
});

test('the handshake stream split at every byte position gives the same events', () => {
  const go = Buffer.alloc(4 + 4 + 2 + 2);
  go.writeUInt32BE(4, 0);
  go.write('disk', 4);
  go.writeUInt16BE(1, 8);
  go.writeUInt16BE(C.INFO_BLOCK_SIZE, 10);
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(C.FLAG_C_FIXED_NEWSTYLE | C.FLAG_C_NO_ZEROES, 0);
  const stream = Buffer.concat([flags, option(C.OPT_STRUCTURED_REPLY, Buffer.alloc(0)), option(999, Buffer.from('junk')), option(C.OPT_GO, go)]);
  const parse = (pieces: Buffer[]) => {
    const queue = new ByteQueue();
    const parser = new HandshakeParser(queue);
    const out: HandshakeEvent[] = [];
    for (const p of pieces) {
      queue.push(p);
      for (let e = parser.next(); e; e = parser.next()) out.push(e);
    }
    return out.map((e) => ('data' in e ? { ...e, data: e.data.toString('hex') } : e));
  };
  const expected = parse([stream]);
  assert.equal(expected.length, 4);
  for (let cut = 1; cut < stream.length; cut++) assert.deepEqual(parse([stream.subarray(0, cut), stream.subarray(cut)]), expected);
  assert.deepEqual(parseInfoRequest(Buffer.from(expected[3]!.kind === 'option' ? (expected[3] as { data: string }).data : '', 'hex')), {
    name: 'disk',
    infos: [C.INFO_BLOCK_SIZE],
  });
});

test('malformed option payloads are rejected, not over-read', () => {
  const lying = Buffer.alloc(8);
  lying.writeUInt32BE(1000, 0); // name length past the end
  assert.equal(parseInfoRequest(lying), undefined);
  assert.equal(parseInfoRequest(Buffer.alloc(3)), undefined);
  const meta = Buffer.alloc(12);
  meta.writeUInt32BE(0, 0);
  meta.writeUInt32BE(0xffffffff, 4); // absurd query count
  assert.equal(parseMetaContextRequest(meta), undefined);
  const ok = Buffer.alloc(4 + 4 + 4 + 5);
  ok.writeUInt32BE(0, 0);
  ok.writeUInt32BE(1, 4);
  ok.writeUInt32BE(5, 8);
  ok.write('base:', 12);
  assert.deepEqual(parseMetaContextRequest(ok), { name: '', queries: ['base:'] });
});

test('an oversized option is skipped and reported; a huge one is fatal', () => {
  const queue = new ByteQueue();
  const parser = new HandshakeParser(queue);
  queue.push(Buffer.alloc(4));
  assert.equal(parser.next()!.kind, 'client-flags');
  queue.push(option(C.OPT_GO, Buffer.alloc(100_000)));
  queue.push(option(C.OPT_ABORT, Buffer.alloc(0)));
  assert.deepEqual(parser.next(), { kind: 'oversized', option: C.OPT_GO, length: 100_000 });
  assert.deepEqual(parser.next(), { kind: 'option', option: C.OPT_ABORT, data: Buffer.alloc(0) });
  const header = option(C.OPT_GO, Buffer.alloc(0));
  header.writeUInt32BE(0xffffffff, 12);
  queue.push(header);
  assert.throws(() => parser.next(), { code: 'ENBDPROTO' });
});

test('replies have the layout of the spec', () => {
  assert.equal(simpleReply(0x0102030405060708n, 22).toString('hex'), '67446698' + '00000016' + '0102030405060708');
  assert.equal(noneChunk(7n).toString('hex'), '668e33ef' + '0001' + '0000' + '0000000000000007' + '00000000');
  const data = Buffer.alloc(28 + 4);
  writeOffsetDataHeader(data, 0, 0, 1n, 2 ** 33 + 5, 4);
  assert.equal(data.subarray(0, 28).toString('hex'), '668e33ef' + '0000' + '0001' + '0000000000000001' + '0000000c' + '0000000200000005');
  const hole = Buffer.alloc(32);
  writeOffsetHole(hole, 0, C.REPLY_FLAG_DONE, 1n, 512, 1024);
  assert.equal(hole.toString('hex'), '668e33ef' + '0001' + '0002' + '0000000000000001' + '0000000c' + '0000000000000200' + '00000400');
  const status = blockStatusChunk(2n, C.REPLY_FLAG_DONE, 1, [{ length: 4096, flags: 3 }]);
  assert.equal(status.toString('hex'), '668e33ef' + '0001' + '0005' + '0000000000000002' + '0000000c' + '00000001' + '00001000' + '00000003');
  const err = errorChunk(3n, 5, 'oops');
  assert.equal(err.toString('hex'), '668e33ef' + '0001' + '8001' + '0000000000000003' + '0000000a' + '00000005' + '0004' + Buffer.from('oops').toString('hex'));
  const errOffset = errorChunk(3n, 5, '', 4096);
  assert.equal(errOffset.readUInt16BE(6), C.REPLY_TYPE_ERROR_OFFSET);
  assert.equal(errOffset.readUInt16BE(4), 0, 'ERROR_OFFSET is not final');
  assert.equal(errOffset.readBigUInt64BE(26), 4096n);
});

test('device errors map to NBD errno values in one place', () => {
  const cases: [unknown, number][] = [
    [new BlockError('EPERM', 'x'), 1],
    [new BlockError('EIO', 'x'), 5],
    [new BlockError('ENOMEM', 'x'), 12],
    [new BlockError('EINVAL', 'x'), 22],
    [new BlockError('ENOSPC', 'x'), 28],
    [new BlockError('EOVERFLOW', 'x'), 75],
    [new BlockError('ENOTSUP', 'x'), 95],
    [new BlockError('ESHUTDOWN', 'x'), 108],
    [Object.assign(new Error('quota'), { code: 'EDQUOT' }), 28],
    [new Error('mystery'), 5],
    ['not even an error', 5],
  ];
  for (const [err, errno] of cases) assert.equal(nbdErrnoFor(err), errno, String(err));
});

test('meta context queries: exact, namespace and prefix wildcards in LIST, exact only in SET', () => {
  const providers = ['base:allocation', 'qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:b', 'qemu:allocation-depth'].map((name) => ({
    name,
    blockStatus: async () => [],
  }));
  const names = (q: string[], mode: 'list' | 'set') => matchContexts(providers, q, mode).map((c) => c.provider.name);
  assert.deepEqual(names([], 'list'), providers.map((p) => p.name));
  assert.deepEqual(names([], 'set'), []);
  assert.deepEqual(names(['qemu:'], 'list'), ['qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:b', 'qemu:allocation-depth']);
  assert.deepEqual(names(['qemu:dirty-bitmap:'], 'list'), ['qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:b']);
  assert.deepEqual(names(['qemu:dirty-bitmap:'], 'set'), []);
  assert.deepEqual(names(['qemu:dirty-bitmap:b', 'base:allocation', 'nope:x'], 'set'), ['base:allocation', 'qemu:dirty-bitmap:b']);
  assert.deepEqual(matchContexts(providers, ['qemu:dirty-bitmap:b'], 'set').map((c) => c.id), [3]);
});
