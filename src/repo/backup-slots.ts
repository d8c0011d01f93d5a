// Slot-level view of one backup's index for jobs that work per chunk (diffs between backups,
// a backup served as a block device): the chunk id of each slot, whether it is a zero slot,
// and the chunk's bytes. Index pages are fetched lazily and the last few are cached.

import { BlobType, ZERO_ID } from './blob-codec.js';
import { RepoError } from './errors.js';
import { pageSlot, slotCount, SLOTS_PER_PAGE } from './index-format.js';
import type { Manifest } from './manifest.js';
import type { Repository } from './repository.js';

const CACHED_PAGES = 4;

export class BackupSlots {
  readonly manifest: Manifest;
  /** Number of slots (the last one may be shorter than chunkSize). */
  readonly count: number;
  readonly #repo: Repository;
  readonly #pageIds: Buffer[];
  readonly #pages = new Map<number, Promise<Buffer>>(); // small LRU by insertion order

  private constructor(repo: Repository, manifest: Manifest, pageIds: Buffer[]) {
    this.#repo = repo;
    this.manifest = manifest;
    this.#pageIds = pageIds;
    this.count = slotCount(manifest.size, manifest.chunkSize);
  }

  static async open(repo: Repository, manifest: Manifest, options: { signal?: AbortSignal } = {}): Promise<BackupSlots> {
    return new BackupSlots(repo, manifest, await repo.pageIds(manifest, options));
  }

  /** Bytes held by slot `slot`. */
  slotLength(slot: number): number {
    return Math.min(this.manifest.chunkSize, this.manifest.size - slot * this.manifest.chunkSize);
  }

  /** Chunk id of a slot (a copy); all zero bytes for a zero slot. */
  async id(slot: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.count) throw new RepoError('EINVALID', `slot ${slot} outside backup ${this.manifest.id} of ${this.count} slots`);
    const pageNo = Math.floor(slot / SLOTS_PER_PAGE);
    let page = this.#pages.get(pageNo);
    if (!page) {
      page = this.#repo.page(this.#pageIds[pageNo]!, options);
      page.catch(() => this.#pages.delete(pageNo));
      this.#pages.set(pageNo, page);
      if (this.#pages.size > CACHED_PAGES) this.#pages.delete(this.#pages.keys().next().value!);
    }
    return Buffer.from(pageSlot(await page, slot % SLOTS_PER_PAGE));
  }

  /** True when the id is the zero-slot marker. */
  static isZero(id: Buffer): boolean {
    return id.equals(ZERO_ID);
  }

  /** The checked bytes of a data chunk, exactly slotLength(slot) long. */
  async chunk(slot: number, id: Buffer, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const data = await this.#repo.readBlob(id, BlobType.chunk, options);
    const expected = this.slotLength(slot);
    if (data.length !== expected) throw new RepoError('ECORRUPT', `chunk for slot ${slot} of backup ${this.manifest.id} is ${data.length} bytes, expected ${expected}`);
    return data;
  }
}
