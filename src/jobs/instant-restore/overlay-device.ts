// A writable view of a read-only base (e.g. a backup): writes go to a local overlay device at
// block granularity; a partial write to a block not yet in the overlay first copies that block
// up from the base. fill() copies every remaining block in the background, after which the
// overlay alone is the whole disk (instant restore: serve at once, restore meanwhile).

import { AbortedError, throwIfAborted } from '../../core/errors.js';
import { isPowerOfTwo } from '../../core/size.js';
import type { BlockCapabilities, BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../../block/block-device.js';
import { BlockError, checkRange } from '../../block/errors.js';

export interface OverlayOptions {
  /** Copy-up unit in bytes, a power of two (e.g. the backup's chunk size). */
  readonly granularity: number;
  /** Refuse writes (the overlay is then only a read cache of the base). */
  readonly readOnly?: boolean;
  /** Blocks already in the overlay (1 per block), e.g. a fill map saved before a restart. */
  readonly initial?: Uint8Array;
  /**
   * Blocks not marked may hold stale bytes in the overlay (a resumed fill after a crash):
   * fill() then writes zero blocks as zeroes instead of only marking them.
   */
  readonly staleOverlay?: boolean;
}

export class OverlayDevice implements BlockDevice {
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  readonly granularity: number;
  readonly #base: BlockDevice;
  readonly #overlay: BlockDevice;
  // 1 = the block's current bytes are in the overlay. Changed only synchronously (one JS thread).
  readonly #inOverlay: Uint8Array;
  // 1 = the block's overlay bytes were completely written (a copy-up or a guest write finished);
  // a flush after that makes them durable. A subset of #inOverlay.
  readonly #settled: Uint8Array;
  readonly #staleOverlay: boolean;
  #settledCount = 0;
  // Blocks marked by a whole-block write still in flight: they hold no complete bytes until it ends.
  readonly #unwritten = new Map<number, number>();
  // Copy-ups in progress by block; every write to such a block waits for it first.
  readonly #copying = new Map<number, Promise<void>>();
  #blocksInOverlay = 0;
  #closed = false;

  /** `overlay` must be `base.size` bytes and read as zeroes (e.g. a fresh sparse file). */
  constructor(base: BlockDevice, overlay: BlockDevice, options: OverlayOptions) {
    if (overlay.size !== base.size) throw new BlockError('EINVAL', `overlay is ${overlay.size} bytes, base is ${base.size}`);
    if (!isPowerOfTwo(options.granularity)) throw new BlockError('EINVAL', `overlay granularity ${options.granularity} is not a power of two`);
    this.#base = base;
    this.#overlay = overlay;
    this.size = base.size;
    this.granularity = options.granularity;
    this.#inOverlay = new Uint8Array(Math.ceil(base.size / options.granularity));
    this.#settled = new Uint8Array(this.#inOverlay.length);
    this.#staleOverlay = options.staleOverlay ?? false;
    if (options.initial) {
      if (options.initial.length !== this.#inOverlay.length) throw new BlockError('EINVAL', `fill map has ${options.initial.length} blocks, the overlay ${this.#inOverlay.length}`);
      for (let block = 0; block < options.initial.length; block++) {
        if (options.initial[block]) this.#mark(block, true);
      }
    }
    const caps = overlay.capabilities;
    this.capabilities = {
      readOnly: options.readOnly ?? false,
      canFlush: caps.canFlush,
      canFua: caps.canFua,
      canTrim: false,
      canZero: true,
      canFastZero: false,
      canCache: false,
      canMultiConn: true,
      canBlockStatus: true,
      minBlockSize: 1,
      preferredBlockSize: Math.max(4096, Math.min(options.granularity, 1 << 20)),
      maxBlockSize: Math.min(caps.maxBlockSize, base.capabilities.maxBlockSize),
    };
  }

  /** Blocks whose overlay bytes were completely written (1 per block, a copy): after a flush they are durable. */
  settledBlocks(): Uint8Array {
    return this.#settled.slice();
  }

  /** Number of settled blocks; it only grows, so an unchanged count means an unchanged map. */
  get settledCount(): number {
    return this.#settledCount;
  }

  /** Blocks whose bytes are in the overlay, and the total. */
  get progress(): { readonly done: number; readonly total: number } {
    return { done: this.#blocksInOverlay, total: this.#inOverlay.length };
  }

  async read(offset: number, target: Uint8Array, options: IoOptions = {}): Promise<void> {
    this.#check(offset, target.length, 'read', options);
    const parts: Promise<void>[] = [];
    for (const run of this.#runs(offset, target.length)) {
      const device = run.inOverlay ? this.#overlay : this.#base;
      parts.push(device.read(run.offset, target.subarray(run.offset - offset, run.offset - offset + run.length), options));
    }
    await settle(parts);
  }

  async write(offset: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    this.#check(offset, data.length, 'write', options, true);
    const claimed = await this.#prepare(offset, data.length, options.signal);
    await this.#settleAfter(offset, data.length, claimed, this.#overlay.write(offset, data, options));
  }

  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    this.#check(offset, length, 'write-zeroes', options, true);
    if (options.fastZero) throw new BlockError('ENOTSUP', 'write-zeroes: fast zero is not supported by the overlay');
    const claimed = await this.#prepare(offset, length, options.signal);
    await this.#settleAfter(offset, length, claimed, this.#overlay.writeZeroes(offset, length, options));
  }

  async discard(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    this.#check(offset, length, 'discard', options, true); // accepted and ignored: content stays as it was
  }

  async flush(options: IoOptions = {}): Promise<void> {
    this.#check(0, 0, 'flush', options);
    await this.#overlay.flush(options);
  }

  async cache(offset: number, length: number, options: IoOptions = {}): Promise<void> {
    this.#check(offset, length, 'cache', options);
  }

  async blockStatus(offset: number, length: number, options: IoOptions = {}): Promise<Extent[]> {
    this.#check(offset, length, 'block-status', options);
    if (length === 0) return [{ offset, length, hole: false, zero: false }];
    const first = this.#runs(offset, length)[0]!;
    return (first.inOverlay ? this.#overlay : this.#base).blockStatus(first.offset, first.length, options);
  }

  /** Copies every block not yet in the overlay from the base; zero blocks are only marked. */
  async fill(
    options: { concurrency?: number; signal?: AbortSignal; onProgress?: (done: number, total: number) => void; throttle?: (bytes: number, signal?: AbortSignal) => Promise<void> } = {},
  ): Promise<void> {
    const total = this.#inOverlay.length;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        throwIfAborted(options.signal);
        if (this.#closed) throw new BlockError('ESHUTDOWN', 'fill: overlay device is closed');
        const block = next++;
        if (this.#inOverlay[block]) continue;
        await options.throttle?.(Math.min(this.granularity, this.size - block * this.granularity), options.signal);
        await this.#copyUp(block, true, options.signal);
        options.onProgress?.(this.#blocksInOverlay, total);
      }
    };
    await settle(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
    await this.#overlay.flush({ signal: options.signal });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled(this.#copying.values());
    await this.#overlay.close();
    await this.#base.close();
  }

  /** Makes every block the range touches writable in the overlay without losing base bytes. */
  async #prepare(offset: number, length: number, signal: AbortSignal | undefined): Promise<number[]> {
    const claimed: number[] = []; // blocks marked without a copy-up: the write itself fills them
    if (length === 0) return claimed;
    const g = this.granularity;
    const end = offset + length;
    const waits: Promise<void>[] = [];
    for (let block = Math.floor(offset / g); block * g < end; block++) {
      waits.push(
        (async () => {
          for (;;) {
            const copying = this.#copying.get(block);
            if (copying) {
              await copying.catch(() => {});
              continue;
            }
            if (this.#inOverlay[block]) return;
            const blockEnd = Math.min(this.size, (block + 1) * g);
            if (offset <= block * g && end >= blockEnd) {
              // Fully overwritten: nothing to keep.
              claimed.push(block);
              this.#unwritten.set(block, (this.#unwritten.get(block) ?? 0) + 1);
              return this.#mark(block);
            }
            return this.#copyUp(block, false, signal);
          }
        })(),
      );
    }
    try {
      await settle(waits);
    } catch (err) {
      this.#release(claimed);
      throw err;
    }
    return claimed;
  }

  /** Waits for a write; if it succeeded, the blocks it touched hold complete bytes unless another whole-block write is still in flight. */
  async #settleAfter(offset: number, length: number, claimed: number[], write: Promise<void>): Promise<void> {
    try {
      await write;
    } finally {
      this.#release(claimed);
    }
    const g = this.granularity;
    for (let block = Math.floor(offset / g); block * g < offset + length; block++) {
      if (!this.#unwritten.has(block)) this.#settle(block);
    }
  }

  #settle(block: number): void {
    if (this.#settled[block]) return;
    this.#settled[block] = 1;
    this.#settledCount++;
  }

  #release(claimed: number[]): void {
    for (const block of claimed) {
      const left = this.#unwritten.get(block)! - 1;
      if (left > 0) this.#unwritten.set(block, left);
      else this.#unwritten.delete(block);
    }
  }

  /** Copies one block from the base into the overlay (once, however many callers ask). */
  #copyUp(block: number, skipZero: boolean, signal: AbortSignal | undefined): Promise<void> {
    const running = this.#copying.get(block);
    if (running) return running;
    const g = this.granularity;
    const offset = block * g;
    const length = Math.min(g, this.size - offset);
    const job = (async () => {
      try {
        if (skipZero && this.#base.capabilities.canBlockStatus) {
          const [first] = await this.#base.blockStatus(offset, length, { signal });
          if (first?.zero && first.length >= length) {
            if (this.#staleOverlay) await this.#overlay.writeZeroes(offset, length, { mayTrim: true, signal });
            return this.#mark(block, true); // a fresh overlay reads as zero where nothing was written
          }
        }
        const bytes = new Uint8Array(length);
        await this.#base.read(offset, bytes, { signal });
        await this.#overlay.write(offset, bytes, { signal });
        this.#mark(block, true);
      } finally {
        this.#copying.delete(block);
      }
    })();
    this.#copying.set(block, job);
    return job;
  }

  #mark(block: number, settled = false): void {
    if (settled) this.#settle(block);
    if (this.#inOverlay[block]) return;
    this.#inOverlay[block] = 1;
    this.#blocksInOverlay++;
  }


  /** The range cut where blocks switch between base and overlay. */
  #runs(offset: number, length: number): Array<{ offset: number; length: number; inOverlay: boolean }> {
    const g = this.granularity;
    const end = offset + length;
    const runs: Array<{ offset: number; length: number; inOverlay: boolean }> = [];
    for (let at = offset; at < end; ) {
      const block = Math.floor(at / g);
      const stop = Math.min(end, (block + 1) * g);
      const inOverlay = this.#inOverlay[block] === 1;
      const last = runs[runs.length - 1];
      if (last && last.inOverlay === inOverlay) last.length = stop - last.offset;
      else runs.push({ offset: at, length: stop - at, inOverlay });
      at = stop;
    }
    return runs;
  }

  #check(offset: number, length: number, what: string, options: IoOptions, writes = false): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `${what}: overlay device is closed`);
    if (options.signal?.aborted) throw new AbortedError('operation aborted', { cause: options.signal.reason });
    checkRange(this.size, offset, length, what);
    if (writes && this.capabilities.readOnly) throw new BlockError('EPERM', `${what}: device is read-only`);
  }
}

async function settle(parts: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
