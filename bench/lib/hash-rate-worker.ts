// One hashing thread of hashRate(): fills a buffer once, says ready, then on 'go' hashes
// `bytes` bytes of it in 64 KiB pieces (the repository's default chunk size) and reports back.

import { randomFillSync } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { blake3 } from '@napi-rs/blake-hash';

const PIECE = 64 * 1024;
const data = randomFillSync(Buffer.alloc(64 * 1024 * 1024));
const { bytes } = workerData as { bytes: number };
parentPort!.postMessage('ready');
parentPort!.once('message', () => {
  let sink = 0;
  for (let done = 0; done < bytes; done += PIECE) {
    const at = done % data.length;
    sink ^= blake3(data.subarray(at, at + PIECE))[0]!;
  }
  parentPort!.postMessage(sink);
});
