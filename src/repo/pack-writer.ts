// Assembles sealed blobs into pack objects of about `targetSize` bytes and uploads them with at
// most `maxInFlight` uploads at once (add() waits: bounded memory). Each pack is followed by its
// index object; `onPack` runs only once both are stored, so callers never record a lost pack.

import type { SealedBlob } from './blob-codec.js';
import { encodeTrailer, packHeader, packIdOf, packKey, PACK_HEADER_SIZE, type PackEntry } from './pack-format.js';
import type { Store } from './store.js';

export type OnPack = (packId: string, size: number, entries: readonly PackEntry[]) => void;

export class PackWriter {
  readonly #store: Store;
  readonly #targetSize: number;
  readonly #onPack: OnPack;
  readonly #maxInFlight: number;
  // The open pack; only touched from the event loop between awaits.
  #parts: Buffer[] = [];
  #entries: PackEntry[] = [];
  #size = PACK_HEADER_SIZE;
  readonly #uploads = new Set<Promise<void>>();
  #failure: unknown;
  #packs = 0;
  #bytes = 0;

  constructor(store: Store, targetSize: number, onPack: OnPack, maxInFlight = 2) {
    this.#store = store;
    this.#targetSize = targetSize;
    this.#onPack = onPack;
    this.#maxInFlight = maxInFlight;
  }

  /** Packs uploaded and their total bytes. */
  get written(): { packs: number; bytes: number } {
    return { packs: this.#packs, bytes: this.#bytes };
  }

  /** Appends a blob; uploads the pack when it reaches the target size. Waits while uploads are saturated. */
  async add(id: Buffer, type: number, blob: SealedBlob, signal?: AbortSignal): Promise<void> {
    while (this.#uploads.size >= this.#maxInFlight) await Promise.race(this.#uploads);
    this.#throwIfFailed();
    // From here on no await: concurrent callers never see a half-detached pack.
    this.#entries.push({ id, type, flags: blob.flags, offset: this.#size, storedLength: blob.stored.length, rawLength: blob.rawLength, crc: blob.crc });
    this.#parts.push(blob.stored);
    this.#size += blob.stored.length;
    if (this.#size >= this.#targetSize) this.#startUpload(signal);
  }

  /** Uploads the open pack (if any) and waits for every upload. */
  async flush(signal?: AbortSignal): Promise<void> {
    while (this.#uploads.size >= this.#maxInFlight) await Promise.race(this.#uploads);
    if (this.#entries.length > 0) this.#startUpload(signal);
    await Promise.allSettled([...this.#uploads]);
    this.#throwIfFailed();
  }

  #startUpload(signal?: AbortSignal): void {
    const entries = this.#entries;
    const header = packHeader();
    const trailer = encodeTrailer(entries);
    const pack = Buffer.concat([header, ...this.#parts, trailer]);
    const packId = packIdOf(header, trailer);
    this.#parts = [];
    this.#entries = [];
    this.#size = PACK_HEADER_SIZE;
    const upload = this.#upload(packId, pack, entries, signal).catch((err: unknown) => {
      this.#failure ??= err;
    });
    this.#uploads.add(upload);
    void upload.finally(() => this.#uploads.delete(upload));
  }

  async #upload(packId: string, pack: Buffer, entries: readonly PackEntry[], signal?: AbortSignal): Promise<void> {
    await this.#store.put(packKey(packId), pack, { ifAbsent: true, signal });
    this.#packs++;
    this.#bytes += pack.length;
    this.#onPack(packId, pack.length, entries);
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }
}
