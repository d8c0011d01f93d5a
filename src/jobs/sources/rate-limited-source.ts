// Caps how fast a backup reads its source (`--rate-limit 50M` = 50 MiB/s), so a nightly job
// leaves bandwidth to the VMs sharing the disk or network. A token bucket with one second of
// burst; reads wait for their tokens before they start.

import { setTimeout as sleep } from 'node:timers/promises';
import type { BackupSource } from '../../repo/backup-source.js';

export function rateLimited(source: BackupSource, bytesPerSecond: number): BackupSource {
  let tokens = bytesPerSecond;
  let last = Date.now();
  // Reads queue on this chain so a large read cannot starve the ones behind it.
  let queue: Promise<void> = Promise.resolve();
  const take = (bytes: number, signal?: AbortSignal): Promise<void> => {
    const turn = queue.then(async () => {
      for (;;) {
        const now = Date.now();
        tokens = Math.min(bytesPerSecond, tokens + ((now - last) / 1000) * bytesPerSecond);
        last = now;
        // A read larger than the bucket goes once the bucket is full, leaving it in debt.
        if (tokens >= Math.min(bytes, bytesPerSecond)) {
          tokens -= bytes;
          return;
        }
        await sleep(Math.ceil(((Math.min(bytes, bytesPerSecond) - tokens) / bytesPerSecond) * 1000), undefined, { signal });
      }
    });
    queue = turn.catch(() => undefined);
    return turn;
  };
  return {
    size: source.size,
    capabilities: source.capabilities,
    read: async (offset, target, options) => {
      await take(target.length, options?.signal);
      return source.read(offset, target, options);
    },
    blockStatus: source.blockStatus?.bind(source),
  };
}
