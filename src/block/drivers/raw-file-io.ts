// Hot-path file I/O for the raw-file driver: try the page cache synchronously (RWF_NOWAIT reads,
// plain pwrite for page-aligned writes), and only on a miss hop to libuv's pool with callback fs.

import { fdatasync, read, write, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { NativeFile } from '../../core/native.js';

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

// Synchronous page-cache writes. ext4 (and most filesystems) refuse buffered RWF_NOWAIT writes
// with EAGAIN, so without this every write would pay a thread-pool round trip. A plain pwrite is
// safe to run on the event loop when it cannot wait for the disk:
//  - whole, page-aligned pages only: no read-modify-write of a partially written page that is not
//    cached (that read is the one disk wait a small write can hit);
//  - modest size (SYNC_WRITE_MAX), so the copy into the page cache takes microseconds;
//  - dirty throttling (balance_dirty_pages sleeping 10-200 ms per pause when dirty memory passes
//    its limits on a slow disk), a journal commit or a page under writeback can still make a write
//    sleep: every synchronous write is timed, and once writes slower than SYNC_WRITE_SLOW_MS add up
//    to more than SLOW_WRITE_BUDGET_MS within one SLOW_WRITE_WINDOW_MS, all writes go through the
//    pool for a backoff period that doubles (up to BACKOFF_MAX_MS) while the disk stays slow. A
//    budget rather than a single strike: on a busy machine a write is now and then preempted for
//    10-20 ms, which is no disk wait and must not send every write back to the pool.
//    4 KiB pages are assumed; with larger pages a 4 KiB-aligned write may read-modify-write, which
//    the timing guard then catches.
const PAGE = 4096;
const SYNC_WRITE_MAX = 256 * 1024;
const SYNC_WRITE_SLOW_MS = 8;
const SLOW_WRITE_WINDOW_MS = 1000;
const SLOW_WRITE_BUDGET_MS = 50;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 32_000;

export class RawFileIo {
  readonly #fd: number;
  readonly #native: NativeFile;
  /** Off: every read and write hops to the pool (tests and benchmarks exercise the fallback). */
  noWait = true;
  // performance.now() before which writes use the pool (after slow synchronous writes).
  #syncWritesPausedUntil = 0;
  #backoffMs = BACKOFF_MIN_MS;
  #slowWindowStart = -Infinity;
  #slowMsInWindow = 0;
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
    if (done === 0 && this.#canWriteNow(position, data.length)) {
      const start = performance.now();
      done = writeSync(this.#fd, data, 0, data.length, position);
      const end = performance.now();
      if (end - start > SYNC_WRITE_SLOW_MS) this.#slowWrite(end, end - start);
      if (done === data.length) return undefined;
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

  #slowWrite(now: number, ms: number): void {
    if (now - this.#slowWindowStart > SLOW_WRITE_WINDOW_MS) {
      this.#slowWindowStart = now;
      this.#slowMsInWindow = 0;
    }
    this.#slowMsInWindow += ms;
    if (this.#slowMsInWindow <= SLOW_WRITE_BUDGET_MS) return;
    // Slow again soon after the last backoff ended: the disk is still slow, back off longer.
    const recent = now - this.#syncWritesPausedUntil < 4 * this.#backoffMs;
    this.#backoffMs = recent ? Math.min(2 * this.#backoffMs, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    this.#syncWritesPausedUntil = now + this.#backoffMs;
    this.#slowWindowStart = -Infinity;
  }

  #canWriteNow(position: number, length: number): boolean {
    if (!this.noWait || length > SYNC_WRITE_MAX || position % PAGE !== 0 || length % PAGE !== 0 || length === 0) return false;
    return this.#syncWritesPausedUntil === 0 || performance.now() >= this.#syncWritesPausedUntil;
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
