// A FIFO limit on requests in flight. Snapshot reads use it so that a backup reader with deep
// queues (nbdcopy: 4 connections × 64 requests) cannot crowd guest I/O off the event loop.

export class IoLimiter {
  readonly #max: number;
  #active = 0;
  // Waiters in arrival order; touched on the JS thread only.
  readonly #queue: (() => void)[] = [];

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /** Runs fn once fewer than `max` others are running. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) await new Promise<void>((resolve) => this.#queue.push(resolve));
    else this.#active++;
    try {
      return await fn();
    } finally {
      const next = this.#queue.shift();
      if (next) next();
      else this.#active--;
    }
  }
}
