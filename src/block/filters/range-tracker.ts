// Requests in flight over byte ranges. Guest writes use it to keep overlapping writes in
// arrival order; snapshot reads register the live ranges they read so that a guest write waits
// for them before overwriting those bytes in place.

export interface RangeTicket {
  /** Ends this request's claim; idempotent. */
  release(): void;
}

// One request in flight, and its ticket: a node of the tracker's list. Its completion promise is
// made only when someone waits on it, so an uncontended request (a guest write with no snapshot)
// costs one object and no hashing.
class Entry implements RangeTicket {
  readonly start: number;
  readonly end: number;
  prev: Entry | undefined;
  next: Entry | undefined;
  #tracker: RangeTracker | undefined;
  #done: Promise<void> | undefined;
  #resolve: (() => void) | undefined;

  constructor(tracker: RangeTracker, start: number, end: number) {
    this.#tracker = tracker;
    this.start = start;
    this.end = end;
  }

  /** Resolves when the request is released. */
  get done(): Promise<void> {
    if (!this.#tracker) return Promise.resolve();
    return (this.#done ??= new Promise<void>((resolve) => (this.#resolve = resolve)));
  }

  release(): void {
    const tracker = this.#tracker;
    if (!tracker) return;
    this.#tracker = undefined;
    tracker.unlink(this);
    this.#resolve?.();
  }
}

export class RangeTracker {
  // A list in arrival order: earlier requests come first. Touched on the JS thread only.
  #head: Entry | undefined;
  #tail: Entry | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Registers [start, end) now; the ticket must be released when the request completes. */
  enter(start: number, end: number): RangeTicket {
    const entry = new Entry(this, start, end);
    entry.prev = this.#tail;
    if (this.#tail) this.#tail.next = entry;
    else this.#head = entry;
    this.#tail = entry;
    this.#size++;
    return entry;
  }

  /** True if a request registered now overlaps [start, end). */
  overlaps(start: number, end: number): boolean {
    for (let e = this.#head; e; e = e.next) if (e.start < end && start < e.end) return true;
    return false;
  }

  /** Resolves once every request registered now that overlaps [start, end) has completed. */
  waitOverlapping(start: number, end: number): Promise<void> | undefined {
    let waits: Promise<void>[] | undefined;
    for (let e = this.#head; e; e = e.next) {
      if (e.start < end && start < e.end) (waits ??= []).push(e.done);
    }
    return waits ? Promise.all(waits).then(() => undefined) : undefined;
  }

  /** Registers [start, end) and returns a promise for the earlier overlapping requests. */
  enterAfterOverlapping(start: number, end: number): { ticket: RangeTicket; ready: Promise<void> | undefined } {
    const ready = this.waitOverlapping(start, end);
    return { ticket: this.enter(start, end), ready };
  }

  /** Takes a released entry off the list (called by Entry.release only). */
  unlink(entry: Entry): void {
    if (entry.prev) entry.prev.next = entry.next;
    else this.#head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.#tail = entry.prev;
    entry.prev = entry.next = undefined;
    this.#size--;
  }
}
