// Bytes received but not yet parsed, kept as the list of chunks the socket delivered: frames
// are cut out of it without concatenating chunks (pg-protocol's and mongodb's lesson).

const EMPTY = Buffer.alloc(0);

export class ByteQueue {
  // Chunks in arrival order; `#head` bytes of the first one are already consumed.
  readonly #chunks: Buffer[] = [];
  #head = 0;
  #length = 0;

  /** Unconsumed bytes. */
  get length(): number {
    return this.#length;
  }

  /** Appends bytes from the peer (kept by reference, never copied). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Copies the next `n` bytes into `target` without consuming them; caller checks `length`. */
  peek(target: Buffer, n: number): void {
    let done = 0;
    let start = this.#head;
    for (let i = 0; done < n; i++) {
      const chunk = this.#chunks[i]!;
      const count = Math.min(chunk.length - start, n - done);
      chunk.copy(target, done, start, start + count);
      done += count;
      start = 0;
    }
  }

  /** Removes and returns the next `n` bytes: a view when they sit in one chunk, else one copy. */
  take(n: number): Buffer {
    const first = this.#chunks[0];
    if (first && first.length - this.#head >= n) {
      const view = first.subarray(this.#head, this.#head + n);
      this.skip(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    this.peek(out, n);
    this.skip(n);
    return out;
  }

  /** Removes and returns up to `max` bytes as a view of the first chunk: never copies. */
  takeView(max: number): Buffer {
    const first = this.#chunks[0];
    if (!first) return EMPTY;
    const view = first.subarray(this.#head, this.#head + Math.min(max, first.length - this.#head));
    this.skip(view.length);
    return view;
  }

  /**
   * Copies the newest chunk's unconsumed bytes into memory of their own. A reader that hands
   * push() views of one buffer it reuses calls this after parsing: only the chunk it just pushed
   * can still be borrowed, and usually nothing of it is left.
   */
  ownLast(): void {
    const last = this.#chunks.length - 1;
    if (last < 0) return;
    const start = last === 0 ? this.#head : 0;
    this.#chunks[last] = Buffer.from(this.#chunks[last]!.subarray(start));
    if (last === 0) this.#head = 0;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let left = Math.min(n, this.#length);
    const dropped = left;
    while (left > 0) {
      const chunk = this.#chunks[0]!;
      const available = chunk.length - this.#head;
      if (available > left) {
        this.#head += left;
        break;
      }
      left -= available;
      this.#chunks.shift();
      this.#head = 0;
    }
    this.#length -= dropped;
    return dropped;
  }

  /** Forgets everything (connection closed). */
  clear(): void {
    this.#chunks.length = 0;
    this.#head = 0;
    this.#length = 0;
  }
}
