// Store wrappers (retry, concurrency limit, counting) over a memory store with
// injected faults: what each promises, asserted by counting the calls that reach the store.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
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
