// A mutex for worker threads over a SharedArrayBuffer (Atomics.wait/notify). A thread that finds
// it taken sleeps in the kernel instead of spinning: on a 2-core machine a spinning waiter takes
// the core the holder, or the main thread, needs. States: 0 free, 1 held, 2 held with waiters
// (so unlocking wakes someone only when someone waits: no syscall on the uncontended path).

export class SharedMutex {
  readonly #state: Int32Array;

  /** Over 4 bytes of `buffer` (from `SharedMutex.buffer()`), the same ones in every thread. */
  constructor(buffer: SharedArrayBuffer) {
    this.#state = new Int32Array(buffer, 0, 1);
  }

  static buffer(): SharedArrayBuffer {
    return new SharedArrayBuffer(4);
  }

  lock(): void {
    let c = Atomics.compareExchange(this.#state, 0, 0, 1);
    if (c === 0) return;
    // Mark it contended before sleeping, so the holder's unlock wakes us.
    if (c !== 2) c = Atomics.exchange(this.#state, 0, 2);
    while (c !== 0) {
      Atomics.wait(this.#state, 0, 2);
      c = Atomics.exchange(this.#state, 0, 2);
    }
  }

  unlock(): void {
    if (Atomics.exchange(this.#state, 0, 0) === 2) Atomics.notify(this.#state, 0, 1);
  }
}
