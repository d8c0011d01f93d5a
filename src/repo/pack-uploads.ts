// Uploads the packs chunk workers finished: at most `maxInFlight` puts at once, each pack
// recorded (`onStored`, the catalog) only once stored, its buffer then handed back for reuse.
// The bytes are never copied or read on the main thread; the trailer is decoded for the catalog.

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
  // Uploads in flight; only touched from the event loop.
  readonly #uploads = new Set<Promise<void>>();
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
    const upload = this.#upload(pack, worker).catch((err: unknown) => {
      this.#failure ??= { err };
    });
    this.#uploads.add(upload);
    void upload.finally(() => this.#uploads.delete(upload));
  }

  /** Resolves once fewer than maxInFlight uploads run; rethrows the first upload failure. */
  async ready(): Promise<void> {
    while (this.#uploads.size >= this.#maxInFlight) await Promise.race(this.#uploads);
    this.#throwIfFailed();
  }

  /** Waits for every upload; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.#uploads.size > 0) await Promise.allSettled([...this.#uploads]);
    this.#throwIfFailed();
  }

  async #upload(pack: AssembledPack, worker: number): Promise<void> {
    const bytes = new Uint8Array(pack.buf, 0, pack.length);
    const entries = decodeTrailer(Buffer.from(pack.buf, pack.trailerAt, pack.length - pack.trailerAt), `pack ${pack.id}`);
    await this.#store.put(packKey(pack.id), bytes, { ifAbsent: true, signal: this.#signal });
    this.#packs++;
    this.#bytes += pack.length;
    this.#hooks.onStored(pack.id, pack.length, entries);
    this.#hooks.recycle(worker, pack.slot);
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.err;
  }
}
