// A tiny bounded-concurrency loop shared by the engines: at most `limit` tasks in flight, the
// first failure stops new tasks and is rethrown once the running ones settle.

import { throwIfAborted } from '../core/errors.js';

export async function runBounded<T extends unknown[]>(items: Iterable<T> | AsyncIterable<T>, fn: (...args: T) => Promise<void>, limit: number, signal?: AbortSignal): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  for await (const item of items) {
    if (failure) break;
    throwIfAborted(signal);
    const p: Promise<void> = fn(...item).catch((err: unknown) => {
      failure ??= { err };
    });
    running.add(p);
    void p.finally(() => running.delete(p));
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.err;
}
