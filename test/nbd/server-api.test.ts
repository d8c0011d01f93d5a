// NbdServer as a library: several listeners (TCP and Unix) at once, export names, removing an
// export ends its connections, close() lets in-flight requests finish.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import * as C from '../../src/nbd/protocol/constants.js';
import { requireTools, run, runOk, scratchDir } from '../helpers/tools.js';
import { RawClient } from './raw-client.js';

test('one server, a TCP and a Unix listener, several exports; removing one ends its clients', async () => {
  requireTools('nbdinfo');
  const dir = await scratchDir();
  const server = new NbdServer();
  try {
    server.addExport({ name: 'a', device: new MemoryDevice(1 << 20) });
    server.addExport({ name: 'b', device: new MemoryDevice(2 << 20), description: 'second' });
    assert.throws(() => server.addExport({ name: 'a', device: new MemoryDevice(1) }), { code: 'ENBDEXPORT', message: /export 'a' already exists/ });
    const tcp = await server.listen({ host: '127.0.0.1', port: 0 });
    const path = join(dir.path, 's.sock');
    await server.listen({ path });
    assert.ok('port' in tcp && tcp.port > 0);
    const overTcp = JSON.parse(await runOk('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${tcp.port}`])) as { exports: { 'export-name': string }[] };
    const overUnix = JSON.parse(await runOk('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${path}`])) as { exports: { 'export-name': string }[] };
    assert.deepEqual(overTcp.exports.map((e) => e['export-name']), ['a', 'b']);
    assert.deepEqual(overUnix.exports.map((e) => e['export-name']), ['a', 'b']);

    const client = await RawClient.connect(path);
    assert.equal((await client.handshake('b')).size, 2 << 20);
    await server.removeExport('b');
    await client.closed;
    assert.equal((await run('nbdinfo', [`nbd+unix:///b?socket=${path}`])).code, 1, 'b is gone');
    const list = JSON.parse(await runOk('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${path}`])) as { exports: unknown[] };
    assert.equal(list.exports.length, 1);
  } finally {
    await server.close();
    await dir.cleanup();
  }
});

test('close() lets an in-flight request finish, then ends the connection', async () => {
  const dir = await scratchDir();
  let release: () => void = () => {};
  const inner = new MemoryDevice(1 << 20);
  await inner.write(0, Buffer.alloc(512, 9));
  const device = Object.assign(Object.create(inner) as MemoryDevice, {
    capabilities: inner.capabilities,
    size: inner.size,
    read: async (offset: number, target: Uint8Array) => {
      await new Promise<void>((resolve) => (release = resolve));
      return inner.read(offset, target);
    },
  });
  const server = new NbdServer();
  server.addExport({ name: 'slow', device });
  const path = join(dir.path, 's.sock');
  await server.listen({ path });
  try {
    const c = await RawClient.connect(path);
    await c.handshake('slow');
    c.sendRequest(C.CMD_READ, 1n, 0, 512);
    await new Promise((r) => setTimeout(r, 50));
    const closing = server.close();
    setTimeout(() => release(), 50);
    assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 1n });
    assert.ok((await c.read(512)).equals(Buffer.alloc(512, 9)));
    await c.closed;
    await closing;
    assert.equal(server.connectionCount, 0);
  } finally {
    await dir.cleanup();
  }
});

test('listen reports an address in use clearly, and replaces a stale Unix socket', async () => {
  const dir = await scratchDir();
  const server = new NbdServer();
  const blocker = createServer();
  try {
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    await assert.rejects(server.listen({ host: '127.0.0.1', port }), { code: 'ENBDLISTEN', message: `cannot listen on '127.0.0.1:${port}': address already in use` });
    // A socket file whose server is gone.
    const path = join(dir.path, 'stale.sock');
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(path, () => r()));
    const fd = (dead as unknown as { _handle: { fd: number } })._handle.fd;
    assert.ok(fd >= 0);
    // Closing normally unlinks the file, so simulate a crash: keep the file, drop the listener.
    await new Promise<void>((r) => {
      (dead as unknown as { _handle: { close: (cb: () => void) => void } })._handle.close(() => r());
    });
    await server.listen({ path });
    server.addExport({ name: 'x', device: new MemoryDevice(4096) });
    const c = await RawClient.connect(path);
    assert.equal((await c.handshake('x')).size, 4096);
    c.destroy();
    // A live socket is not stolen.
    await assert.rejects(new NbdServer().listen({ path }), { code: 'ENBDLISTEN' });
  } finally {
    blocker.close();
    await server.close();
    await dir.cleanup();
  }
});
