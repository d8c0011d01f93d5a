// One behaviour suite for every Store (memory, local directory, S3): an implementation that
// passes it can hold a repository. Store-agnostic on purpose: only the Store interface is used.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Store } from '../../src/repo/store.js';

export interface StoreFixture {
  readonly store: Store;
  readonly cleanup: () => Promise<void>;
}

async function collect(store: Store, prefix: string): Promise<Map<string, number>> {
  const keys = new Map<string, number>();
  for await (const entry of store.list(prefix)) {
    assert.ok(!keys.has(entry.key), `list yielded '${entry.key}' twice`);
    keys.set(entry.key, entry.size);
  }
  return keys;
}

async function rejectsNotFound(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, (err: unknown) => (err as { code?: string }).code === 'ENOTFOUND');
}

/** Registers the conformance tests for a store made fresh by `factory` for each test. */
export function runStoreConformance(name: string, factory: () => Promise<StoreFixture>, options: { keyCount?: number } = {}): void {
  const keyCount = options.keyCount ?? 2000;

  const withStore = (title: string, body: (store: Store) => Promise<void>): void => {
    test(`${name}: ${title}`, async () => {
      const { store, cleanup } = await factory();
      try {
        await body(store);
      } finally {
        await store.close?.();
        await cleanup();
      }
    });
  };

  withStore('put then get returns the same bytes; put replaces', async (store) => {
    const a = randomBytes(100_000);
    assert.deepEqual(await store.put('data/a', a), { written: true });
    assert.ok((await store.get('data/a')).equals(a));
    const b = randomBytes(10);
    await store.put('data/a', b);
    assert.ok((await store.get('data/a')).equals(b));
    await store.put('empty', new Uint8Array(0));
    assert.equal((await store.get('empty')).length, 0);
  });

  withStore('range reads, including past the end', async (store) => {
    const data = randomBytes(4096);
    await store.put('r/x', data);
    assert.ok((await store.get('r/x', { range: { offset: 100, length: 200 } })).equals(data.subarray(100, 300)));
    assert.ok((await store.get('r/x', { range: { offset: 4000, length: 200 } })).equals(data.subarray(4000)));
    assert.equal((await store.get('r/x', { range: { offset: 5000, length: 10 } })).length, 0);
    assert.ok((await store.get('r/x', { range: { offset: 0, length: 4096 } })).equals(data));
  });

  withStore('stat reports the size; missing keys fail with ENOTFOUND', async (store) => {
    await store.put('s/one', randomBytes(1234));
    assert.equal((await store.stat('s/one')).size, 1234);
    await rejectsNotFound(store.stat('s/two'));
    await rejectsNotFound(store.get('s/two'));
    await rejectsNotFound(store.get('s/two', { range: { offset: 0, length: 1 } }));
  });

  withStore('put-if-absent never overwrites', async (store) => {
    assert.deepEqual(await store.put('k', Buffer.from('first'), { ifAbsent: true }), { written: true });
    assert.deepEqual(await store.put('k', Buffer.from('second'), { ifAbsent: true }), { written: false });
    assert.equal((await store.get('k')).toString(), 'first');
  });

  withStore('a buffer overwritten once onDataReleased ran does not change what was stored', async (store) => {
    // Small and large (a local store writes 1 MiB and up another way) objects, plain and if-absent.
    for (const [key, size, ifAbsent] of [['rel/small', 5000, false], ['rel/large', 3 * 1024 * 1024 + 17, true]] as const) {
      const original = randomBytes(size);
      const data = Buffer.from(original);
      let calls = 0;
      await store.put(key, data, {
        ifAbsent,
        onDataReleased: () => {
          calls++;
          data.fill(0xa5);
        },
      });
      assert.ok(calls <= 1, `onDataReleased ran ${calls} times`);
      data.fill(0x5a); // settled: the buffer is the caller's again in any case
      assert.ok((await store.get(key)).equals(original), `${key}: stored bytes changed with the released buffer`);
    }
  });

  withStore('concurrent put-if-absent of one key: exactly one writer wins, content intact', async (store) => {
    const values = Array.from({ length: 16 }, () => randomBytes(64 * 1024));
    const results = await Promise.all(values.map((v) => store.put('race/key', v, { ifAbsent: true })));
    const winners = results.map((r, i) => (r.written ? i : -1)).filter((i) => i >= 0);
    assert.equal(winners.length, 1);
    assert.ok((await store.get('race/key')).equals(values[winners[0]!]!));
    assert.deepEqual([...(await collect(store, 'race/')).keys()], ['race/key']);
  });

  withStore(`list by prefix at pagination scale (${keyCount} keys)`, async (store) => {
    const expected = new Map<string, number>();
    const keys = Array.from({ length: keyCount }, (_, i) => `many/${(i % 7).toString()}/obj-${i.toString().padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map(async (key, j) => {
        await store.put(key, Buffer.alloc(j % 5));
        expected.set(key, j % 5);
      }));
    }
    await store.put('other/x', Buffer.from('x'));
    await store.put('manyx', Buffer.from('y'));
    assert.deepEqual(await collect(store, 'many/'), expected);
    const three = await collect(store, 'many/3/');
    assert.deepEqual([...three.keys()].sort(), keys.filter((k) => k.startsWith('many/3/')).sort());
    const partial = await collect(store, 'many/3/obj-000');
    assert.deepEqual([...partial.keys()].sort(), keys.filter((k) => k.startsWith('many/3/obj-000')).sort());
    assert.equal((await collect(store, '')).size, keyCount + 2);
    assert.equal((await collect(store, 'nothing/')).size, 0);
  });

  withStore('delete is idempotent and removes the key from list', async (store) => {
    await store.put('d/a', Buffer.from('a'));
    await store.put('d/b', Buffer.from('b'));
    await store.delete('d/a');
    await store.delete('d/a');
    await store.delete('d/never');
    await rejectsNotFound(store.get('d/a'));
    assert.deepEqual([...(await collect(store, 'd/')).keys()], ['d/b']);
  });

  withStore('invalid keys are refused', async (store) => {
    for (const key of ['', '../x', 'a/../b', '/abs', 'a//b', '.hidden', 'a/.tmp-x']) {
      await assert.rejects(store.put(key, Buffer.from('x')), (err: unknown) => (err as { code?: string }).code === 'EINVALID', key);
    }
  });

  withStore('aborted signal rejects', async (store) => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(store.put('x', Buffer.from('x'), { signal: controller.signal }));
  });
}
