// Concurrency: requests of one connection run in parallel and reply out of order, the
// in-flight cap stops reading the socket (backpressure to the client), and 100 connections
// each writing and verifying their own region all get their own bytes back.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IoOptions } from '../../src/block/block-device.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import * as C from '../../src/nbd/protocol/constants.js';
import { RecordingDevice, patternBytes, startTestServer } from './helpers.js';
import { RawClient } from './raw-client.js';

/** A device whose reads wait until the test releases them, counting how many wait at once. */
class GatedDevice extends RecordingDevice {
  waiting = 0;
  maxWaiting = 0;
  readonly #gates: (() => void)[] = [];

  override async read(offset: number, target: Uint8Array, o?: IoOptions): Promise<void> {
    this.waiting++;
    this.maxWaiting = Math.max(this.maxWaiting, this.waiting);
    await new Promise<void>((resolve) => this.#gates.push(resolve));
    this.waiting--;
    return super.read(offset, target, o);
  }

  /** Releases the read that arrived `index`-th among those still waiting. */
  release(index = 0): void {
    this.#gates.splice(index, 1)[0]?.();
  }
}

async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !fn(); i++) await sleep(10);
  assert.ok(fn(), what);
}

test('replies go out as requests complete, not in request order', async () => {
  const device = new GatedDevice(1 << 20);
  const srv = await startTestServer([{ name: 'd', device }]);
  try {
    const c = await RawClient.connect(srv.socket);
    await c.handshake('d');
    c.sendRequest(C.CMD_READ, 1n, 0, 512);
    c.sendRequest(C.CMD_READ, 2n, 4096, 512);
    await until('both reads reach the device together', () => device.waiting === 2);
    device.release(1);
    assert.equal((await c.simpleReply()).cookie, 2n, 'the second request is answered first');
    await c.read(512);
    device.release(0);
    assert.equal((await c.simpleReply()).cookie, 1n);
    c.destroy();
  } finally {
    await srv.stop();
  }
});

test('the in-flight cap bounds requests at the device and resumes as they complete', async () => {
  const device = new GatedDevice(1 << 20);
  const srv = await startTestServer([{ name: 'd', device }], { maxInFlightRequests: 4 });
  try {
    const c = await RawClient.connect(srv.socket);
    await c.handshake('d');
    for (let i = 0; i < 40; i++) c.sendRequest(C.CMD_READ, BigInt(i), i * 512, 512);
    await until('four reads are in flight', () => device.waiting === 4);
    await sleep(100);
    assert.equal(device.waiting, 4, 'no fifth request was started');
    const seen = new Set<bigint>();
    for (let i = 0; i < 40; i++) {
      await until('a read is waiting', () => device.waiting > 0);
      device.release();
      const reply = await c.simpleReply();
      assert.equal(reply.error, 0);
      await c.read(512);
      seen.add(reply.cookie);
    }
    assert.equal(seen.size, 40);
    assert.equal(device.maxWaiting, 4);
    c.destroy();
  } finally {
    await srv.stop();
  }
});

test('100 concurrent connections each write and verify their own region', async () => {
  const clients = 100;
  const region = 256 * 1024;
  const device = new MemoryDevice(clients * region);
  const srv = await startTestServer([{ name: 'd', device }]);
  try {
    await Promise.all(
      [...Array(clients).keys()].map(async (i) => {
        const c = await RawClient.connect(srv.socket);
        const { flags } = await c.handshake('d', i % 2 === 0);
        assert.ok(flags & C.FLAG_CAN_MULTI_CONN);
        const data = patternBytes(region, i + 1);
        // Four writes in flight, then a read of the whole region.
        for (let part = 0; part < 4; part++) {
          const slice = data.subarray((part * region) / 4, ((part + 1) * region) / 4);
          c.sendRequest(C.CMD_WRITE, BigInt(part), i * region + (part * region) / 4, slice.length, { payload: slice });
        }
        const cookies = new Set<bigint>();
        for (let part = 0; part < 4; part++) {
          const reply = await c.simpleReply();
          assert.equal(reply.error, 0);
          cookies.add(reply.cookie);
        }
        assert.equal(cookies.size, 4);
        c.sendRequest(C.CMD_READ, 9n, i * region, region, { flags: i % 4 === 0 ? C.CMD_FLAG_DF : 0 });
        let back: Buffer;
        if (i % 2 === 0) {
          const chunk = await c.chunk();
          assert.equal(chunk.type, C.REPLY_TYPE_OFFSET_DATA);
          back = chunk.payload.subarray(8);
        } else {
          assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 9n });
          back = await c.read(region);
        }
        assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'), `client ${i}`);
        c.sendRequest(C.CMD_DISC, 10n, 0, 0);
        await c.closed;
      }),
    );
    const all = Buffer.alloc(clients * region);
    await device.read(0, all);
    for (let i = 0; i < clients; i++) assert.ok(all.subarray(i * region, (i + 1) * region).equals(patternBytes(region, i + 1)));
  } finally {
    await srv.stop();
  }
});
