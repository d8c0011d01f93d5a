// One abort listener on a caller's signal however many store requests run under it. A backup
// shares one signal across dozens of concurrent requests, queued waiters and retry backoffs;
// hanging each of them on that signal trips Node's MaxListenersExceededWarning during an outage.

import { addAbortListener, setMaxListeners } from 'node:events';

/** A borrowed signal that follows the caller's; `release()` exactly once when the call settles. */
export interface FanoutLease {
  readonly signal: AbortSignal | undefined;
  release(): void;
}

interface Link {
  readonly controller: AbortController;
  readonly unlink: Disposable;
  users: number;
}

const NO_SIGNAL: FanoutLease = { signal: undefined, release: () => undefined };

export class AbortFanout {
  // Caller signal -> our child signal, while at least one call under it is running.
  readonly #links = new Map<AbortSignal, Link>();

  /** A child of `signal` shared by every call running under it; its listeners go once all release. */
  acquire(signal: AbortSignal | undefined): FanoutLease {
    if (!signal) return NO_SIGNAL;
    if (signal.aborted) return { signal, release: () => undefined };
    let link = this.#links.get(signal);
    if (!link) {
      const controller = new AbortController();
      // Every call under the caller's signal listens on this child while it runs, and removes its
      // listener when it settles: the count follows the caller's concurrency, not a leak.
      setMaxListeners(0, controller.signal);
      const unlink = addAbortListener(signal, () => controller.abort(signal.reason));
      link = { controller, unlink, users: 0 };
      this.#links.set(signal, link);
    }
    link.users++;
    const current = link;
    let released = false;
    return {
      signal: current.controller.signal,
      release: () => {
        if (released) return;
        released = true;
        if (--current.users > 0) return;
        current.unlink[Symbol.dispose]();
        if (this.#links.get(signal) === current) this.#links.delete(signal);
      },
    };
  }

  /** Runs `call` with the shared child of `signal`. */
  async run<T>(signal: AbortSignal | undefined, call: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    const lease = this.acquire(signal);
    try {
      return await call(lease.signal);
    } finally {
      lease.release();
    }
  }

  /** Caller signals with a live link (tests assert it drops back to zero). */
  get linked(): number {
    return this.#links.size;
  }
}
