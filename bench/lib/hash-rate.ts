// The machine's hashing limit: BLAKE3 over 64 KiB pieces on every core at once (worker
// threads), as bytes per second. One half of the "machine limit" the backup bench compares with.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const WORKER = new URL('./hash-rate-worker.js', import.meta.url);

/** Hashes `bytesPerWorker` bytes on each of `threads` workers; returns total bytes per second. */
export async function hashRate(bytesPerWorker: number, threads = availableParallelism()): Promise<number> {
  const workers = Array.from({ length: threads }, () => new Worker(WORKER, { workerData: { bytes: bytesPerWorker } }));
  try {
    await Promise.all(workers.map((w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject))));
    const started = process.hrtime.bigint();
    await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
      w.once('message', resolve).once('error', reject);
      w.postMessage('go');
    })));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return (bytesPerWorker * threads) / seconds;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
