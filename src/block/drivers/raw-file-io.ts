// Hot-path file I/O for the raw-file driver: try the page cache synchronously (RWF_NOWAIT), and
// only on a miss hop to libuv's pool with callback-style fs (cheaper than promises/FileHandle).

import { fdatasync, read, write } from 'node:fs';
import type { NativeFile } from '../native.js';

/** Largest request served synchronously on the event loop; bigger ones always use the pool. */
const NOWAIT_MAX = 1024 * 1024;
/** After this many NOWAIT write misses in a row, stop trying for WRITE_RETRY_AFTER writes. */
const WRITE_MISS_LIMIT = 16;
const WRITE_RETRY_AFTER = 4096;

export class RawFileIo {
  readonly #fd: number;
  readonly #native: NativeFile;
  /** Tests and benchmarks turn the NOWAIT path off to measure or exercise the fallback. */
  noWait = true;
  // Writes to filesystems without buffered NOWAIT support (ext4) always miss: back off.
  #writeMisses = 0;
  #writeSkip = 0;
  // fdatasync coalescing: one running, at most one queued that serves every later caller.
  #syncRunning: Promise<void> | undefined;
  #syncQueued: Promise<void> | undefined;

  constructor(fd: number, nativeFile: NativeFile) {
    this.#fd = fd;
    this.#native = nativeFile;
  }

  /** Fills target with the bytes at position; bytes past the end of the file read as zero. */
  read(position: number, target: Uint8Array): Promise<void> | undefined {
    let done = 0;
    if (this.noWait && target.length <= NOWAIT_MAX) {
      const n = this.#native.preadNoWait(this.#fd, target, 0, target.length, position);
      if (n === target.length) return undefined;
      if (n === 0) {
        target.fill(0);
        return undefined;
      }
      if (n > 0) done = n;
    }
    return new Promise((resolve, reject) => {
      const step = (): void => {
        read(this.#fd, target, done, target.length - done, position + done, (err, n) => {
          if (err) return reject(err);
          if (n === 0) target.fill(0, done);
          else if ((done += n) < target.length) return step();
          resolve();
        });
      };
      step();
    });
  }

  /** Writes all of data at position. */
  write(position: number, data: Uint8Array): Promise<void> | undefined {
    let done = 0;
    if (this.noWait && data.length <= NOWAIT_MAX && this.#writeSkip === 0) {
      const n = this.#native.pwriteNoWait(this.#fd, data, 0, data.length, position);
      if (n === data.length) {
        this.#writeMisses = 0;
        return undefined;
      }
      if (n > 0) done = n;
      else if (++this.#writeMisses >= WRITE_MISS_LIMIT) this.#writeSkip = WRITE_RETRY_AFTER;
    } else if (this.#writeSkip > 0) {
      this.#writeSkip--;
    }
    return new Promise((resolve, reject) => {
      const step = (): void => {
        write(this.#fd, data, done, data.length - done, position + done, (err, n) => {
          if (err) return reject(err);
          if ((done += n) < data.length) return step();
          resolve();
        });
      };
      step();
    });
  }

  /** Makes every write completed before the call durable; concurrent callers share syncs. */
  sync(): Promise<void> {
    if (!this.#syncRunning) return this.#startSync();
    // A running sync may have started before our writes completed: queue exactly one more.
    this.#syncQueued ??= this.#syncRunning.then(
      () => this.#startSync(),
      () => this.#startSync(),
    );
    return this.#syncQueued;
  }

  #startSync(): Promise<void> {
    this.#syncQueued = undefined;
    const running = new Promise<void>((resolve, reject) => {
      fdatasync(this.#fd, (err) => (err ? reject(err) : resolve()));
    });
    this.#syncRunning = running;
    const clear = (): void => {
      if (this.#syncRunning === running) this.#syncRunning = undefined;
    };
    running.then(clear, clear);
    return running;
  }
}
