// Uploads the packs chunk workers finished: at most `maxInFlight` pack buffers out at once, each
// handed back for reuse as soon as the store has written its bytes (a local store still has the
// fsync and rename to do, ~40% of a put here: the next pack fills meanwhile), and each pack
// recorded (`onStored`, the catalog) only once stored. The bytes are never copied or read on the
// main thread; the trailer is decoded for the catalog.

import type { AssembledPack } from './pack-assembler.js';
import { decodeTrailer, packKey, type PackEntry } from './pack-format.js';
import type { Store } from './store.js';

export interface PackUploadsHooks {
  /** Runs once a pack is stored (record it in the catalog). */
  readonly onStored: (packId: string, size: number, entries: readonly PackEntry[]) => void;
  /** Hands the pack's buffer (slot) back once nothing reads it any more. */
  readonly recycle: (worker: number, slot: number) => void;
}

export class PackUploads {
  readonly #store: Store;
  readonly #hooks: PackUploadsHooks;
  readonly #maxInFlight: number;
  readonly #signal: AbortSignal | undefined;
  // Uploads in flight, and how many of them still hold their pack buffer; only touched from the
  // event loop. ready() waits on #changed, which settles when either goes down.
  readonly #uploads = new Set<Promise<void>>();
  #buffersOut = 0;
  #changed: { promise: Promise<void>; resolve: () => void } | undefined;
  #failure: { err: unknown } | undefined;
  #packs = 0;
  #bytes = 0;

  constructor(store: Store, hooks: PackUploadsHooks, options: { maxInFlight?: number; signal?: AbortSignal } = {}) {
    this.#store = store;
    this.#hooks = hooks;
    this.#maxInFlight = options.maxInFlight ?? 2;
    this.#signal = options.signal;
  }

  /** Packs stored and their total bytes. */
  get written(): { packs: number; bytes: number } {
    return { packs: this.#packs, bytes: this.#bytes };
  }

  /** Starts storing a finished pack (never waits: call ready() to bound memory). */
  start(pack: AssembledPack, worker: number): void {
    let out = true;
    this.#buffersOut++;
    const release = (): void => {
      if (!out) return;
      out = false;
      this.#buffersOut--;
      this.#hooks.recycle(worker, pack.slot);
      this.#wake();
    };
    const upload = this.#upload(pack, release)
      .catch((err: unknown) => {
        this.#failure ??= { err };
      })
      .finally(() => {
        release();
        this.#uploads.delete(upload);
        this.#wake();
      });
    this.#uploads.add(upload);
  }

  /**
   * Resolves once fewer than maxInFlight pack buffers are out (and fewer than twice as many
   * uploads run: finishing ones hold a file and a thread each); rethrows the first upload failure.
   */
  async ready(): Promise<void> {
    while (this.#buffersOut >= this.#maxInFlight || this.#uploads.size >= 2 * this.#maxInFlight) {
      this.throwIfFailed();
      await this.#nextChange();
    }
    this.throwIfFailed();
  }

  /** Waits for every upload; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.#uploads.size > 0) await Promise.allSettled([...this.#uploads]);
    this.throwIfFailed();
  }

  async #upload(pack: AssembledPack, release: () => void): Promise<void> {
    const bytes = new Uint8Array(pack.buf, pack.offset, pack.length);
    // Copies: the buffer may be refilled before the put settles.
    const entries = decodeTrailer(Buffer.from(pack.buf, pack.offset + pack.trailerAt, pack.length - pack.trailerAt), `pack ${pack.id}`);
    await this.#store.put(packKey(pack.id), bytes, { ifAbsent: true, signal: this.#signal, onDataReleased: release });
    this.#packs++;
    this.#bytes += pack.length;
    this.#hooks.onStored(pack.id, pack.length, entries);
  }

  #nextChange(): Promise<void> {
    if (!this.#changed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#changed = { promise, resolve };
    }
    return this.#changed.promise;
  }

  #wake(): void {
    const changed = this.#changed;
    this.#changed = undefined;
    changed?.resolve();
  }

  /** Rethrows the first upload failure, if any (for work that does not wait in ready()). */
  throwIfFailed(): void {
    if (this.#failure) throw this.#failure.err;
  }
}
