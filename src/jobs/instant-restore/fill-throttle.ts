// Caps how fast a background fill copies (`restore --live --rate-limit 50M`), so the guest's
// on-demand reads keep most of the repository's bandwidth. A token bucket with one second of
// burst; callers wait in arrival order.

import { setTimeout as sleep } from 'node:timers/promises';

export function fillThrottle(bytesPerSecond: number): (bytes: number, signal?: AbortSignal) => Promise<void> {
  let tokens = bytesPerSecond;
  let last = Date.now();
  let queue: Promise<void> = Promise.resolve();
  return (bytes, signal) => {
    const turn = queue.then(async () => {
      for (;;) {
        const now = Date.now();
        tokens = Math.min(bytesPerSecond, tokens + ((now - last) / 1000) * bytesPerSecond);
        last = now;
        const need = Math.min(bytes, bytesPerSecond);
        if (tokens >= need) {
          tokens -= bytes;
          return;
        }
        await sleep(Math.ceil(((need - tokens) / bytesPerSecond) * 1000), undefined, { signal });
      }
    });
    queue = turn.catch(() => undefined);
    return turn;
  };
}
