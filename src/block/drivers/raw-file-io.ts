// Hot-path file I/O for the raw-file driver: reads try the page cache synchronously (RWF_NOWAIT),
// page-aligned writes go to a writer thread, and the rest hops to libuv's pool with callback fs.

import { fdatasync, read, write } from 'node:fs';
import type { NativeFile } from '../../core/native.js';
import { FileWriter } from './file-writer.js';

/** Largest request served synchronously on the event loop; bigger ones always use the pool. */
const NOWAIT_MAX = 1024 * 1024;
/** After this many NOWAIT write misses in a row, stop trying for WRITE_RETRY_AFTER writes. */
const WRITE_MISS_LIMIT = 16;
const WRITE_RETRY_AFTER = 4096;
// Cold cache: a NOWAIT miss costs a syscall on the event loop (which also starts the readahead)
// before the pool read. While fewer than COLD_HIT_RATE of recent NOWAIT reads hit, only one read
// in COLD_PROBE_MASK+1 tries NOWAIT; the rest go straight to the pool, whose threads then do the
// kernel's I/O submission work on other cores. Probes that hit bring the NOWAIT path back.
const COLD_HIT_RATE = 0.25;
const COLD_PROBE_MASK = 7;
const HIT_RATE_WEIGHT = 1 / 16;

// Page-cache writes on the writer thread (file-writer.ts). ext4 (and most filesystems) refuse
// buffered RWF_NOWAIT writes with EAGAIN, so without it every write would pay a thread-pool round
// trip. Only whole, page-aligned pages go there: such a write never reads the disk first (no
// read-modify-write of a partly written page that is not cached), so one thread serving them in
// order is not held up by reads. A write can still wait for the disk (dirty throttling, a journal
// commit, a page under writeback); while WRITER_QUEUE_MAX writes are queued on the thread, more go
// to the pool, whose many threads then wait in parallel. 4 KiB pages are assumed; with larger
// pages a 4 KiB-aligned write may read-modify-write, which costs only time.
const PAGE = 4096;
const WRITER_MAX = 1024 * 1024;
const WRITER_QUEUE_MAX = 64;

export class RawFileIo {
  readonly #fd: number;
  readonly #native: NativeFile;
  /** Off: every read and write hops to the pool (tests and benchmarks exercise the fallback). */
  noWait = true;
  readonly #writer: FileWriter;
  // Writes to filesystems without buffered NOWAIT support (ext4) always miss: back off.
  #writeMisses = 0;
  #writeSkip = 0;
  // fdatasync coalescing: one running, at most one queued that serves every later caller.
  #syncRunning: Promise<void> | undefined;
  #syncQueued: Promise<void> | undefined;
  // Moving average of NOWAIT read hits, and a counter choosing the probes while cold.
  #readHitRate = 1;
  #readProbes = 0;

  constructor(fd: number, nativeFile: NativeFile) {
    this.#fd = fd;
    this.#native = nativeFile;
    this.#writer = new FileWriter(nativeFile);
  }

  /** Fills target with the bytes at position; bytes past the end of the file read as zero. */
  read(position: number, target: Uint8Array): Promise<void> | undefined {
    let done = 0;
    if (this.noWait && target.length <= NOWAIT_MAX && (this.#readHitRate >= COLD_HIT_RATE || (++this.#readProbes & COLD_PROBE_MASK) === 0)) {
      const n = this.#native.preadNoWait(this.#fd, target, 0, target.length, position);
      const hit = n === target.length || n === 0;
      this.#readHitRate += ((hit ? 1 : 0) - this.#readHitRate) * HIT_RATE_WEIGHT;
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
    if (done === 0 && this.#forWriter(position, data.length)) return this.#writer.write(this.#fd, data, position);
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

  #forWriter(position: number, length: number): boolean {
    return this.noWait && length <= WRITER_MAX && position % PAGE === 0 && length % PAGE === 0 && length > 0 && this.#writer.queued < WRITER_QUEUE_MAX;
  }

  /** Ends the writer thread (after the device's writes are done). */
  close(): void {
    this.#writer.close();
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
