// Store wrappers (retry, concurrency limit, counting) over a memory store with
// injected faults: what each promises, asserted by counting the calls that reach the store.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { GetOptions, PutOptions, Store, StoreEntry, StoreSignal, StoreStat } from '../../src/repo/store.js';
import { CountingStore, requestCount } from '../../src/repo/stores/counting-store.js';
import { LimitStore } from '../../src/repo/stores/limit-store.js';
import { MemoryStore } from '../../src/repo/stores/memory-store.js';
import { parseS3Location } from '../../src/repo/stores/open-store.js';
import { RetryStore } from '../../src/repo/stores/retry-store.js';
import { S3StoreError } from '../../src/repo/stores/s3-errors.js';
import { runStoreConformance } from '../repo/store-conformance.js';

const transient = (): S3StoreError => new S3StoreError('s3 request failed (http 503)', { retryable: true, status: 503 });

/** Fails the next `failures` calls (optionally after doing the work, like a lost response). */
class FlakyStore implements Store {
  readonly inner = new MemoryStore();
  failures = 0;
  failAfterWork = false;
  error: () => Error = transient;
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;

  async #call<T>(work: () => Promise<T>): Promise<T> {
    this.calls++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.failures > 0 && !this.failAfterWork) {
        this.failures--;
        throw this.error();
      }
      const result = await work();
      if (this.failures > 0) {
        this.failures--;
        throw this.error();
      }
      return result;
    } finally {
      this.inFlight--;
    }
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<{ written: boolean }> {
    return this.#call(() => this.inner.put(key, data, options));
  }
  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.#call(() => this.inner.get(key, options));
  }
  stat(key: string, options?: StoreSignal): Promise<StoreStat> {
    return this.#call(() => this.inner.stat(key, options));
  }
  delete(key: string, options?: StoreSignal): Promise<void> {
    return this.#call(() => this.inner.delete(key, options));
  }
  async *list(prefix: string, options?: StoreSignal): AsyncIterable<StoreEntry> {
    let n = 0;
    for await (const entry of this.inner.list(prefix, options)) {
      if (++n === 3 && this.failures > 0) {
        this.failures--;
        throw this.error();
      }
      yield entry;
    }
  }
}

const fast = { baseDelayMs: 1, maxDelayMs: 5 };

runStoreConformance('retry(limit(counting(memory)))', async () => ({
  store: new RetryStore(new LimitStore(new CountingStore(new MemoryStore()), 4), fast),
  cleanup: async () => undefined,
}), { keyCount: 300 });

test('retry: transient failures are retried until success; refusals are not', async () => {
  const flaky = new FlakyStore();
  const retries: number[] = [];
  const store = new RetryStore(flaky, { ...fast, onRetry: (r) => retries.push(r.attempt) });
  flaky.failures = 3;
  await store.put('a', Buffer.from('x'));
  assert.equal(flaky.calls, 4);
  assert.deepEqual(retries, [1, 2, 3]);
  assert.equal((await store.get('a')).toString(), 'x');

  flaky.calls = 0;
  flaky.failures = 10;
  await assert.rejects(store.get('a'), (err: unknown) => err instanceof S3StoreError);
  assert.equal(flaky.calls, 6, 'gives up after the configured attempts');

  flaky.calls = 0;
  flaky.failures = 1;
  flaky.error = () => new S3StoreError('s3 get failed (AccessDenied, http 403)', { retryable: false, status: 403 });
  await assert.rejects(store.get('a'), /AccessDenied/);
  assert.equal(flaky.calls, 1);

  flaky.calls = 0;
  flaky.failures = 0;
  await assert.rejects(store.get('missing'), (err: unknown) => (err as { code?: string }).code === 'ENOTFOUND');
  assert.equal(flaky.calls, 1, 'a missing key is an answer, not a failure');
});

test('retry: a put-if-absent whose lost first attempt landed still reports written', async () => {
  const flaky = new FlakyStore();
  const store = new RetryStore(flaky, fast);
  flaky.failAfterWork = true;
  flaky.failures = 1;
  const data = randomBytes(1000);
  assert.deepEqual(await store.put('manifests/m1', data, { ifAbsent: true }), { written: true });
  assert.ok((await flaky.inner.get('manifests/m1')).equals(data));
  // Someone else's different bytes under the key: not ours, so not written.
  await flaky.inner.put('manifests/m2', Buffer.from('other'));
  flaky.failAfterWork = false;
  flaky.failures = 1;
  assert.deepEqual(await store.put('manifests/m2', data, { ifAbsent: true }), { written: false });
  assert.equal((await flaky.inner.get('manifests/m2')).toString(), 'other');
});

test('retry: a listing that fails part-way yields every key exactly once', async () => {
  const flaky = new FlakyStore();
  for (let i = 0; i < 10; i++) await flaky.inner.put(`l/${i}`, Buffer.alloc(i));
  flaky.failures = 2;
  const store = new RetryStore(flaky, fast);
  const keys: string[] = [];
  for await (const entry of store.list('l/')) keys.push(entry.key);
  assert.deepEqual(keys.sort(), Array.from({ length: 10 }, (_, i) => `l/${i}`).sort());
});

test('retry: aborting during a backoff rejects with EABORTED at once', async () => {
  const flaky = new FlakyStore();
  flaky.failures = 100;
  const store = new RetryStore(flaky, { baseDelayMs: 10_000, maxDelayMs: 10_000, attempts: 100 });
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(store.get('x', { signal: controller.signal }), (err: unknown) => (err as { code?: string }).code === 'EABORTED');
  assert.ok(Date.now() - started < 5000);
});

test('limit: never more requests in flight than the limit, and all complete', async () => {
  const flaky = new FlakyStore();
  flaky.delayMs = 5;
  const store = new LimitStore(flaky, 3);
  await Promise.all(Array.from({ length: 40 }, (_, i) => store.put(`k/${i}`, Buffer.from([i]))));
  assert.equal(flaky.maxInFlight, 3);
  assert.equal(store.active, 0);
  const got = await Promise.all(Array.from({ length: 40 }, (_, i) => store.get(`k/${i}`)));
  assert.deepEqual(got.map((b) => b[0]), Array.from({ length: 40 }, (_, i) => i));
  assert.equal(flaky.maxInFlight, 3);
});

test('limit: a waiter aborted in the queue rejects and frees nothing it did not hold', async () => {
  const flaky = new FlakyStore();
  flaky.delayMs = 50;
  const store = new LimitStore(flaky, 1);
  const first = store.put('a', Buffer.from('a'));
  const controller = new AbortController();
  const second = store.put('b', Buffer.from('b'), { signal: controller.signal });
  controller.abort();
  await assert.rejects(second, (err: unknown) => (err as { code?: string }).code === 'EABORTED');
  await first;
  assert.equal(store.active, 0);
  await assert.rejects(flaky.inner.get('b'));
});

test('counting: requests and bytes are counted, list pages by 1000 keys', async () => {
  const memory = new MemoryStore();
  const store = new CountingStore(memory);
  await store.put('a', Buffer.alloc(100));
  await store.get('a');
  await store.get('a', { range: { offset: 0, length: 10 } });
  await store.stat('a');
  await store.delete('a');
  await assert.rejects(store.get('a'));
  for (let i = 0; i < 2500; i++) await memory.put(`p/${i}`, Buffer.alloc(0));
  for await (const entry of store.list('p/')) void entry;
  assert.deepEqual(store.byKind, { 'delete a': 1, 'get a': 3, 'list p': 3, 'put a': 1, 'stat a': 1 });
  const counts = store.reset();
  assert.deepEqual(counts, { put: 1, get: 3, stat: 1, list: 3, delete: 1, errors: 1, bytesWritten: 100, bytesRead: 110 });
  assert.deepEqual(store.byKind, {});
  assert.equal(requestCount(counts), 9);
  assert.equal(requestCount(store.counts), 0);
});

test('s3 locations parse; bad buckets are refused quoting the value', () => {
  assert.deepEqual(parseS3Location('s3://bucket'), { bucket: 'bucket', prefix: '' });
  assert.deepEqual(parseS3Location('s3://bucket/'), { bucket: 'bucket', prefix: '' });
  assert.deepEqual(parseS3Location('s3://my-bucket/a/b/'), { bucket: 'my-bucket', prefix: 'a/b/' });
  assert.equal(parseS3Location('/var/backups/repo'), undefined);
  assert.throws(() => parseS3Location('s3://ab/x'), /invalid s3 bucket 'ab'/);
  assert.throws(() => parseS3Location('s3://Bucket/x'), /invalid s3 bucket 'Bucket'/);
  assert.throws(() => parseS3Location('s3://bucket/a/../b'), /invalid s3 key prefix/);
});

test('readInto through retry, limit and counting: retried until whole, counted as gets', async () => {
  const flaky = new FlakyStore();
  const data = randomBytes(100_000);
  await flaky.inner.put('packs/p', data);
  const counting = new CountingStore(flaky);
  const store = new RetryStore(new LimitStore(counting, 2), fast);
  flaky.failures = 2;
  const target = Buffer.alloc(5000);
  assert.equal(await store.readInto('packs/p', 1234, target), 5000);
  assert.ok(target.equals(data.subarray(1234, 6234)));
  assert.equal(await store.readInto('packs/p', data.length - 10, target), 10, 'a range past the end reads what exists');
  assert.ok(target.subarray(0, 10).equals(data.subarray(data.length - 10)));
  assert.deepEqual({ get: counting.counts.get, errors: counting.counts.errors, bytesRead: counting.counts.bytesRead }, { get: 4, errors: 2, bytesRead: 5010 });
  await assert.rejects(store.readInto('packs/missing', 0, target), (err: unknown) => (err as { code?: string }).code === 'ENOTFOUND');
});

test('retry: many retried requests on one signal leave at most one abort listener on it, none once settled', async () => {
  const flaky = new FlakyStore();
  flaky.delayMs = 1;
  await flaky.inner.put('k', Buffer.from('v'));
  const store = new RetryStore(new LimitStore(flaky, 4), { attempts: 4, baseDelayMs: 2, maxDelayMs: 4 });
  const controller = new AbortController();
  const { signal } = controller;
  let most = 0;
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  const sampler = setInterval(() => (most = Math.max(most, getEventListeners(signal, 'abort').length)), 1);
  try {
    for (let round = 0; round < 5; round++) {
      flaky.failures = 60; // 50 calls, 110 attempts at least: most calls are retried
      const callsBefore = flaky.calls;
      const results = await Promise.allSettled([
        ...Array.from({ length: 30 }, () => store.get('k', { signal })),
        ...Array.from({ length: 10 }, () => store.readInto('k', 0, Buffer.alloc(1), { signal })),
        ...Array.from({ length: 10 }, () => store.stat('k', { signal })),
      ]);
      assert.ok(flaky.calls - callsBefore >= 110, 'failed attempts were retried');
      assert.ok(results.some((r) => r.status === 'fulfilled'));
      most = Math.max(most, getEventListeners(signal, 'abort').length);
      assert.equal(getEventListeners(signal, 'abort').length, 0, `round ${round}: listeners left after every call settled`);
    }
    assert.ok(most <= 1, `at most one listener on the caller's signal, saw ${most}`);
    // Abort still reaches calls queued, running and backing off.
    flaky.failures = 1000;
    const patient = new RetryStore(new LimitStore(flaky, 4), { attempts: 1000, baseDelayMs: 2, maxDelayMs: 4 });
    setTimeout(() => controller.abort(), 20);
    const aborted = await Promise.allSettled(Array.from({ length: 20 }, () => patient.get('k', { signal })));
    assert.deepEqual(aborted.map((r) => r.status === 'rejected' && (r.reason as { code?: string }).code), Array(20).fill('EABORTED'));
    assert.equal(getEventListeners(signal, 'abort').length, 0);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings.filter((w) => w === 'MaxListenersExceededWarning'), []);
  } finally {
    clearInterval(sampler);
    process.off('warning', onWarning);
  }
});

test('retry over a real S3 client whose endpoint refuses connections: no listener leak, no warning', async () => {
  const { S3Store } = await import('../../src/repo/stores/s3-store.js');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve())); // nothing listens there now
  const raw = new S3Store({ bucket: 'outage', endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1' });
  const store = new RetryStore(new LimitStore(raw, 16), { attempts: 3, baseDelayMs: 2, maxDelayMs: 4 });
  const { signal } = new AbortController();
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    for (let round = 0; round < 3; round++) {
      const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => (i % 2 ? store.put(`k${i}`, Buffer.from('x'), { signal }) : store.readInto(`k${i}`, 0, Buffer.alloc(8), { signal }))));
      assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'ESTORE'));
      assert.ok(getEventListeners(signal, 'abort').length <= 1);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(getEventListeners(signal, 'abort').length, 0);
    assert.deepEqual(warnings.filter((w) => w === 'MaxListenersExceededWarning'), []);
  } finally {
    process.off('warning', onWarning);
    await store.close();
  }
});
