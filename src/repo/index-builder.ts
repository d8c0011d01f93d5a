// Builds a backup's paged index while slots complete out of order: a page is hashed and stored
// (unless the repository already has it) as soon as its last outstanding slot is set. Pages
// with nothing to do keep the parent's page id untouched.

import { BlobType, ID_LENGTH, ZERO_ID } from './blob-codec.js';
import { pageCount, SLOTS_PER_PAGE, slotsInPage } from './index-format.js';

export interface IndexBuilderHooks {
  /** Starting content of a page: the parent's page, or undefined for all-zero slots. */
  readonly seed: (page: number) => Promise<Buffer | undefined>;
  /** Stores a finished page blob (if new) and resolves when it is queued. */
  readonly store: (id: Buffer, type: number, plain: Buffer) => Promise<void>;
  readonly idOf: (plain: Buffer) => Buffer;
}

export class IndexBuilder {
  readonly pageIds: (Buffer | undefined)[];
  readonly #slots: number;
  readonly #hooks: IndexBuilderHooks;
  // Open pages: content being filled and how many slots are still outstanding.
  readonly #open = new Map<number, { buf: Promise<Buffer>; remaining: number }>();
  readonly #remaining: Int32Array;

  /** `todo[p]`: slots of page p that will be set; pages with 0 must get their id from `preset`. */
  constructor(slots: number, todo: Int32Array, preset: (page: number) => Buffer | undefined, hooks: IndexBuilderHooks) {
    this.#slots = slots;
    this.#hooks = hooks;
    this.#remaining = todo;
    this.pageIds = Array.from({ length: pageCount(slots) }, (_, p) => (todo[p] === 0 ? preset(p) : undefined));
  }

  /** Records slot ids (undefined = zero) for consecutive slots from `first`. */
  async set(first: number, ids: readonly (Buffer | undefined)[]): Promise<void> {
    let i = 0;
    while (i < ids.length) {
      const slot = first + i;
      const page = Math.floor(slot / SLOTS_PER_PAGE);
      const n = Math.min(ids.length - i, (page + 1) * SLOTS_PER_PAGE - slot);
      let open = this.#open.get(page);
      if (!open) {
        const length = slotsInPage(page, this.#slots) * ID_LENGTH;
        open = { buf: this.#hooks.seed(page).then((b) => (b ? Buffer.from(b) : Buffer.alloc(length))), remaining: this.#remaining[page]! };
        this.#open.set(page, open);
      }
      const buf = await open.buf;
      for (let k = 0; k < n; k++) (ids[i + k] ?? ZERO_ID).copy(buf, (slot + k - page * SLOTS_PER_PAGE) * ID_LENGTH);
      // Counted down only after copying, so the page is hashed with every slot in place.
      open.remaining -= n;
      if (open.remaining === 0) {
        this.#open.delete(page);
        const id = this.#hooks.idOf(buf);
        this.pageIds[page] = id;
        await this.#hooks.store(id, BlobType.page, buf);
      }
      i += n;
    }
  }

  /** The root blob: every page id in order. Throws if a page is unfinished (a bug). */
  root(): Buffer {
    const missing = this.pageIds.findIndex((id) => id === undefined);
    if (missing >= 0) throw new Error(`index page ${missing} was never completed`);
    return Buffer.concat(this.pageIds as Buffer[]);
  }
}
