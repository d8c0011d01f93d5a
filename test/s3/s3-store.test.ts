// The store conformance suite against a real Ceph radosgw: the bare S3Store, and the full stack
// `openStore('s3://…')` builds (retries, concurrency limit), plus S3-specific behaviour.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Store } from '../../src/repo/store.js';
import { openStore } from '../../src/repo/stores/open-store.js';
import type { ReadsInto } from '../../src/repo/stores/reads-into.js';
import { S3Store, S3StoreError } from '../../src/repo/stores/s3-store.js';
import { startRgw, type Rgw } from '../helpers/rgw.js';
import { runStoreConformance } from '../repo/store-conformance.js';

let rgw: Rgw;
let n = 0;

before(async () => {
  rgw = await startRgw();
}, { timeout: 240_000 });

after(async () => {
  await rgw?.stop();
});

runStoreConformance('s3', async () => {
  const store = await rgw.store('conformance', `t${++n}/`);
  return { store, cleanup: async () => undefined };
}, { keyCount: 2500 });

runStoreConformance('s3 via openStore', async () => {
  const store = await openStore(`s3://stack/t${++n}`, { create: true });
  return { store, cleanup: async () => undefined };
}, { keyCount: 1200 });

test('s3: keys live under the prefix; another prefix of the bucket is invisible', async () => {
  const a = await rgw.store('prefixes', 'one/');
  const b = await rgw.store('prefixes', 'one-more/');
  const root = await rgw.store('prefixes');
  try {
    await a.put('k', Buffer.from('a'));
    await b.put('k', Buffer.from('b'));
    assert.deepEqual((await collectKeys(a, '')), ['k']);
    assert.deepEqual((await collectKeys(root, '')).sort(), ['one-more/k', 'one/k']);
    assert.equal((await root.get('one/k')).toString(), 'a');
  } finally {
    await Promise.all([a.close(), b.close(), root.close()]);
  }
});

test('s3: a missing bucket is ENOREPO, not a missing key', async () => {
  const store = new S3Store({ bucket: 'no-such-bucket-here', endpoint: rgw.endpoint });
  try {
    await assert.rejects(store.get('config'), (err: unknown) => (err as { code?: string }).code === 'ENOREPO');
    await assert.rejects(openStore('s3://no-such-bucket-here/x').then((s) => s.get('config')), (err: unknown) => (err as { code?: string }).code === 'ENOREPO');
  } finally {
    await store.close();
  }
});

test('s3: bad credentials are refused without retries (not retryable)', async () => {
  const saved = process.env.AWS_SECRET_ACCESS_KEY;
  process.env.AWS_SECRET_ACCESS_KEY = 'wrong-secret';
  const store = new S3Store({ bucket: 'conformance', endpoint: rgw.endpoint });
  try {
    await assert.rejects(store.get('x'), (err: unknown) => (err as { code?: string; retryable?: boolean }).code === 'ESTORE' && (err as { retryable?: boolean }).retryable === false);
  } finally {
    process.env.AWS_SECRET_ACCESS_KEY = saved;
    await store.close();
  }
});

test('s3: large object round trip and ranged reads inside it', async () => {
  const store = await rgw.store('conformance', 'large/');
  try {
    const data = randomBytes(24 * 2 ** 20);
    await store.put('pack', data, { ifAbsent: true });
    assert.ok((await store.get('pack')).equals(data));
    for (const offset of [0, 1, 5 * 2 ** 20 + 17, data.length - 100]) {
      assert.ok((await store.get('pack', { range: { offset, length: 4096 } })).equals(data.subarray(offset, offset + 4096)));
    }
    assert.equal((await store.stat('pack')).size, data.length);
  } finally {
    await store.close();
  }
});

test('s3: readInto fills the caller buffer at the range asked for, through the whole stack too', async () => {
  const raw = await rgw.store('conformance', 'read-into/');
  const stack = await openStore('s3://conformance/read-into', {});
  try {
    const data = randomBytes(9 * 2 ** 20 + 123);
    await raw.put('pack', data);
    for (const store of [raw, stack as Store & ReadsInto]) {
      for (const [offset, length] of [[0, 4 * 2 ** 20], [1, 1], [5 * 2 ** 20 + 17, 3 * 2 ** 20], [data.length - 100, 100]] as const) {
        const target = Buffer.alloc(length + 8, 0xee);
        assert.equal(await store.readInto('pack', offset, target.subarray(4, 4 + length)), length);
        assert.ok(target.subarray(4, 4 + length).equals(data.subarray(offset, offset + length)), `bytes ${offset}+${length}`);
        assert.ok(target.subarray(0, 4).equals(Buffer.alloc(4, 0xee)) && target.subarray(4 + length).equals(Buffer.alloc(4, 0xee)), 'nothing outside the range is touched');
      }
      // Past the end: what exists, then nothing; a missing key is ENOTFOUND.
      const tail = Buffer.alloc(1000);
      assert.equal(await store.readInto('pack', data.length - 10, tail), 10);
      assert.ok(tail.subarray(0, 10).equals(data.subarray(data.length - 10)));
      assert.equal(await store.readInto('pack', data.length + 5, tail), 0);
      await assert.rejects(store.readInto('missing', 0, tail), (err: unknown) => (err as { code?: string }).code === 'ENOTFOUND');
    }
  } finally {
    await Promise.all([raw.close(), stack.close?.()]);
  }
});

test('s3: readInto refuses a body longer than asked for, and an answer for another range', async () => {
  const server = createServer((req, res) => {
    const whole = req.url?.includes('whole') === true;
    // A server that ignores Range: 200 with the whole 64-byte object, or a 206 of the wrong bytes.
    if (whole) res.writeHead(200, { 'content-length': 64 });
    else res.writeHead(206, { 'content-length': 16, 'content-range': 'bytes 0-15/64' });
    res.end(Buffer.alloc(whole ? 64 : 16, 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const store = new S3Store({ bucket: 'fake', endpoint: `http://127.0.0.1:${port}` });
  try {
    await assert.rejects(store.readInto('whole', 0, Buffer.alloc(16)), (err: unknown) => err instanceof S3StoreError && !err.retryable && /64/.test(err.message));
    await assert.rejects(store.readInto('other', 32, Buffer.alloc(16)), (err: unknown) => err instanceof S3StoreError && !err.retryable && /bytes 0-15\/64/.test(err.message));
  } finally {
    await store.close();
    server.close();
  }
});

async function collectKeys(store: S3Store, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const entry of store.list(prefix)) keys.push(entry.key);
  return keys;
}
