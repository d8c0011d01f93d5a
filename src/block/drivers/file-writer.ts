// Small page-cache writes on a native writer thread (native/file_writer.c) instead of the event
// loop or libuv's pool. A buffered 4 KiB write costs the kernel 3-17 µs (the high end on files the
// page cache holds in large folios); on the event loop that time is taken from parsing and
// answering every other request, while the pool's per-write thread wake-ups cost more than the
// write itself on these VMs. The writer thread takes its queue in batches and keeps going while
// writes arrive, so the event loop pays a queue push and one completion call per write.

import type { NativeFile, WriterHandle } from '../../core/native.js';

interface Waiter {
  readonly data: Uint8Array; // kept alive until the thread is done with it
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export class FileWriter {
  readonly #native: NativeFile;
  #handle: WriterHandle | undefined;
  #nextId = 0;
  readonly #waiting = new Map<number, Waiter>();

  constructor(native: NativeFile) {
    this.#native = native;
  }

  /** Writes queued and not yet finished. */
  get queued(): number {
    return this.#waiting.size;
  }

  /** Writes all of data at position in fd (short writes are finished by the thread). */
  write(fd: number, data: Uint8Array, position: number): Promise<void> {
    this.#handle ??= this.#native.createWriter((id, err) => this.#finished(id, err));
    const id = this.#nextId++;
    this.#native.writerSubmit(this.#handle, fd, data, position, id);
    return new Promise((resolve, reject) => this.#waiting.set(id, { data, resolve, reject }));
  }

  /** Ends the thread once the writes already queued are done (their promises still settle). */
  close(): void {
    if (this.#handle) this.#native.writerClose(this.#handle);
    this.#handle = undefined;
  }

  #finished(id: number, err: Error | null): void {
    const waiter = this.#waiting.get(id);
    if (!waiter) return;
    this.#waiting.delete(id);
    if (err) waiter.reject(err);
    else waiter.resolve();
  }
}
