// Random access to one backup's bytes (for instant restore / a read-only BlockDevice driver):
// read(offset, target) fetches and checks only the chunks the range touches. Pages and the last
// few chunks are cached; zero slots cost nothing.

import { ZERO_ID } from './blob-codec.js';
import { RepoError } from './errors.js';
import { pageSlot, SLOTS_PER_PAGE } from './index-format.js';
import type { Manifest } from './manifest.js';
import type { Repository } from './repository.js';

export class BackupReader {
  readonly manifest: Manifest;
  readonly #repo: Repository;
  readonly #pageIds: Buffer[];
  readonly #chunks = new Map<string, Buffer>(); // small LRU by insertion order

  private constructor(repo: Repository, manifest: Manifest, pageIds: Buffer[]) {
    this.#repo = repo;
    this.manifest = manifest;
    this.#pageIds = pageIds;
  }

  static async open(repo: Repository, manifest: Manifest, options: { signal?: AbortSignal } = {}): Promise<BackupReader> {
    return new BackupReader(repo, manifest, await repo.pageIds(manifest, options));
  }

  get size(): number {
    return this.manifest.size;
  }

  /** Fills `target` with the backup's bytes at offset; ECORRUPT/ENOTFOUND on damage. */
  async read(offset: number, target: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (offset < 0 || offset + target.length > this.manifest.size) {
      throw new RepoError('EINVALID', `read ${offset}+${target.length} outside backup of ${this.manifest.size} bytes`);
    }
    const chunkSize = this.manifest.chunkSize;
    let done = 0;
    while (done < target.length) {
      const at = offset + done;
      const slot = Math.floor(at / chunkSize);
      const within = at - slot * chunkSize;
      const n = Math.min(target.length - done, chunkSize - within);
      const chunk = await this.#chunk(slot, options.signal);
      if (chunk) target.set(chunk.subarray(within, within + n), done);
      else target.fill(0, done, done + n);
      done += n;
    }
  }

  async #chunk(slot: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    const page = await this.#repo.page(this.#pageIds[Math.floor(slot / SLOTS_PER_PAGE)]!, { signal });
    const id = pageSlot(page, slot % SLOTS_PER_PAGE);
    if (id.equals(ZERO_ID)) return undefined;
    const hex = id.toString('hex');
    let chunk = this.#chunks.get(hex);
    if (!chunk) {
      chunk = await this.#repo.readBlob(Buffer.from(id), 0, { signal });
      this.#chunks.set(hex, chunk);
      if (this.#chunks.size > 16) this.#chunks.delete(this.#chunks.keys().next().value!);
    }
    return chunk;
  }
}
