// SharedMutex: worker threads updating shared memory under it never lose an update.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { SharedMutex } from '../../src/core/shared-mutex.js';

test('SharedMutex: four threads, 20000 unprotected read-modify-writes each, none lost', async () => {
  const lock = SharedMutex.buffer();
  const counter = new SharedArrayBuffer(8);
  const moduleUrl = new URL('../../src/core/shared-mutex.js', import.meta.url).href;
  // The increment is a load, a pause, and a store: without the mutex, threads overwrite each other.
  const body = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.moduleUrl).then(({ SharedMutex }) => {
      const mutex = new SharedMutex(workerData.lock);
      const count = new Int32Array(workerData.counter);
      for (let i = 0; i < 20000; i++) {
        mutex.lock();
        const v = Atomics.load(count, 0);
        for (let spin = 0; spin < 20; spin++) Atomics.load(count, 1);
        Atomics.store(count, 0, v + 1);
        mutex.unlock();
      }
      parentPort.postMessage('done');
    });
  `;
  await Promise.all(Array.from({ length: 4 }, () => new Promise<void>((resolve, reject) => {
    const worker = new Worker(body, { eval: true, workerData: { lock, counter, moduleUrl } });
    worker.once('message', () => resolve());
    worker.once('error', reject);
  }).then(() => undefined)));
  assert.equal(new Int32Array(counter)[0], 80000);
  assert.equal(new Int32Array(lock)[0], 0, 'left unlocked');
});
