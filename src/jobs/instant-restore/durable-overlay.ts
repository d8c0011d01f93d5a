// An OverlayDevice whose fill map survives a crash: the map of settled blocks is saved after a
// flush of the local image, on every guest flush and FUA write (before they are acknowledged),
// and periodically while the background fill runs. Invariant: a block marked in the saved map
// holds durable, complete bytes (the backup's or a later guest write); see docs/jobs.md.

import { describeError } from '../../core/errors.js';
import type { BlockCapabilities, BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../../block/block-device.js';
import type { OverlayDevice } from './overlay-device.js';

export interface DurableOverlayOptions {
  /** Saves a map (1 per block) durably; called one at a time. */
  readonly save: (blocks: Uint8Array) => Promise<void>;
  /** Save period while blocks change (default 1000 ms). */
  readonly intervalMs?: number;
  readonly log?: (line: string) => void;
}

export interface FillStatus {
  readonly state: 'copying' | 'done' | 'failed' | 'stopped';
  readonly doneBlocks: number;
  readonly totalBlocks: number;
  readonly error?: string;
}

export class DurableOverlayDevice implements BlockDevice {
  readonly overlay: OverlayDevice;
  readonly #save: (blocks: Uint8Array) => Promise<void>;
  readonly #log: (line: string) => void;
  readonly #timer: NodeJS.Timeout;
  readonly #fillAbort = new AbortController();
  #fill: Promise<void> | undefined;
  #state: FillStatus['state'] = 'copying';
  #error: string | undefined;
  // Saves run one after another; #queued is the next one, not started, that new callers join
  // (it takes its snapshot of settled blocks only when it starts, so it covers their writes).
  #running: Promise<void> = Promise.resolve();
  #queued: Promise<void> | undefined;
  #savedCount = -1;
  #closed = false;

  constructor(overlay: OverlayDevice, options: DurableOverlayOptions) {
    this.overlay = overlay;
    this.#save = options.save;
    this.#log = options.log ?? (() => {});
    this.#timer = setInterval(() => {
      if (this.overlay.settledCount !== this.#savedCount) this.persist().catch((err: unknown) => this.#log(`fill map save failed: ${describeError(err)}`));
    }, options.intervalMs ?? 1000);
    this.#timer.unref();
  }

  get size(): number {
    return this.overlay.size;
  }

  get capabilities(): BlockCapabilities {
    return this.overlay.capabilities;
  }

  get status(): FillStatus {
    const { done, total } = this.overlay.progress;
    return { state: this.#state, doneBlocks: done, totalBlocks: total, ...(this.#error ? { error: this.#error } : {}) };
  }

  /** Starts copying every remaining block; resolves when done (the map is then all ones and durable). */
  startFill(options: { concurrency?: number; throttle?: (bytes: number, signal?: AbortSignal) => Promise<void> } = {}): Promise<void> {
    this.#fill ??= (async () => {
      try {
        await this.overlay.fill({ concurrency: options.concurrency, throttle: options.throttle, signal: this.#fillAbort.signal });
        await this.persist();
        this.#state = 'done';
      } catch (err) {
        this.#state = this.#fillAbort.signal.aborted ? 'stopped' : 'failed';
        this.#error = this.#state === 'failed' ? describeError(err) : undefined;
        throw err;
      }
    })();
    return this.#fill;
  }

  /** Flushes the local image, then saves the map of blocks settled before the flush. */
  persist(options: IoOptions = {}): Promise<void> {
    if (this.#queued) return this.#queued;
    const run = this.#running.then(async () => {
      this.#queued = undefined;
      const count = this.overlay.settledCount;
      const blocks = count === this.#savedCount ? undefined : this.overlay.settledBlocks();
      await this.overlay.flush(options);
      // An unchanged map needs no save: a flush alone makes the new writes to settled blocks durable.
      if (blocks) await this.#save(blocks);
      this.#savedCount = count;
    });
    this.#queued = run;
    this.#running = run.catch(() => {});
    return run;
  }

  read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    return this.overlay.read(offset, target, options);
  }

  async write(offset: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    await this.overlay.write(offset, data, options);
    if (options.fua) await this.persist(options);
  }

  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    await this.overlay.writeZeroes(offset, length, options);
    if (options.fua) await this.persist(options);
  }

  discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.overlay.discard(offset, length, options);
  }

  /** A guest flush: its writes are durable and recorded in the map before it returns. */
  async flush(options: IoOptions = {}): Promise<void> {
    await this.persist(options);
  }

  cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    return this.overlay.cache(offset, length, options);
  }

  blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    return this.overlay.blockStatus(offset, length, options);
  }

  /** Stops the fill, saves the map one last time, closes the overlay (and its base and image). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#fillAbort.abort();
    await this.#fill?.catch(() => {});
    await this.persist().catch((err: unknown) => this.#log(`fill map save failed: ${describeError(err)}`));
    await this.overlay.close();
  }
}
