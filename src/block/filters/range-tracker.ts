// Requests in flight over byte ranges. Guest writes use it to keep overlapping writes in
// arrival order; snapshot reads register the live ranges they read so that a guest write waits
// for them before overwriting those bytes in place.

interface Entry {
  readonly start: number;
  readonly end: number;
  readonly done: Promise<void>;
}

export interface RangeTicket {
  /** Ends this request's claim; idempotent. */
  release(): void;
}

export class RangeTracker {
  // Insertion-ordered: earlier requests come first. Touched on the JS thread only.
  readonly #entries = new Set<Entry>();

  get size(): number {
    return this.#entries.size;
  }

  /** Registers [start, end) now; the ticket must be released when the request completes. */
  enter(start: number, end: number): RangeTicket {
    let resolve!: () => void;
    const entry: Entry = { start, end, done: new Promise<void>((r) => (resolve = r)) };
    this.#entries.add(entry);
    return {
      release: () => {
        if (this.#entries.delete(entry)) resolve();
      },
    };
  }

  /** Resolves once every request registered now that overlaps [start, end) has completed. */
  waitOverlapping(start: number, end: number): Promise<void> | undefined {
    let waits: Promise<void>[] | undefined;
    for (const e of this.#entries) {
      if (e.start < end && start < e.end) (waits ??= []).push(e.done);
    }
    return waits ? Promise.all(waits).then(() => undefined) : undefined;
  }

  /** Registers [start, end) and returns a promise for the earlier overlapping requests. */
  enterAfterOverlapping(start: number, end: number): { ticket: RangeTicket; ready: Promise<void> | undefined } {
    const ready = this.waitOverlapping(start, end);
    return { ticket: this.enter(start, end), ready };
  }
}
