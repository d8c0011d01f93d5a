// Incremental parser of an `rbd diff v1` stream: push bytes as they arrive, pull records.
// Memory stays bounded: a 'w' record's data comes out in pieces as its bytes arrive, never
// gathered into one buffer, and every length is checked against the image size first.

import { ByteQueue } from '../../nbd/protocol/byte-queue.js';
import { BANNER, DiffError, MAX_SNAP_NAME, TAG_END, TAG_FROM_SNAP, TAG_SIZE, TAG_TO_SNAP, TAG_WRITE, TAG_ZERO } from './format.js';

export type DiffEvent =
  | { readonly kind: 'from-snap'; readonly name: string }
  | { readonly kind: 'to-snap'; readonly name: string }
  | { readonly kind: 'size'; readonly size: number }
  /** A piece of a 'w' record: `data` belongs at `offset`; `last` ends the record. */
  | { readonly kind: 'data'; readonly offset: number; readonly data: Buffer; readonly last: boolean }
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'end' };

/** Largest piece of write data returned at once. */
const MAX_PIECE = 4 * 1024 * 1024;

export class RbdDiffParser {
  readonly #queue = new ByteQueue();
  #bannerSeen = false;
  #size: number | undefined;
  #inData = false;
  #ended = false;
  // The 'w' record whose data is still arriving.
  #write: { offset: number; left: number } | undefined;
  // Where the previous data record ended: records must not go backwards (rbd merge-diff needs that).
  #position = 0;

  /** Adds bytes from the stream (kept by reference). */
  push(chunk: Buffer): void {
    if (this.#ended && chunk.length > 0) throw new DiffError('EDIFFFORMAT', `${chunk.length} bytes after the end record`);
    this.#queue.push(chunk);
  }

  /** The image size from the 's' record, once seen. */
  get size(): number | undefined {
    return this.#size;
  }

  /** Next event, or undefined until more bytes arrive; throws DiffError on a malformed stream. */
  next(): DiffEvent | undefined {
    const queue = this.#queue;
    if (this.#ended) {
      if (queue.length > 0) throw new DiffError('EDIFFFORMAT', `${queue.length} bytes after the end record`);
      return undefined;
    }
    if (!this.#bannerSeen) {
      if (queue.length < BANNER.length) return undefined;
      const banner = queue.take(BANNER.length);
      if (!banner.equals(BANNER)) throw new DiffError('EDIFFFORMAT', `not an rbd diff v1 stream (starts with '${banner.toString('latin1').replace(/\n/g, '\\n')}')`);
      this.#bannerSeen = true;
    }
    const write = this.#write;
    if (write) {
      if (queue.length === 0) return undefined;
      const n = Math.min(write.left, queue.length, MAX_PIECE);
      const event = { kind: 'data', offset: write.offset, data: queue.take(n), last: n === write.left } as const;
      write.offset += n;
      write.left -= n;
      if (write.left === 0) this.#write = undefined;
      return event;
    }
    if (queue.length < 1) return undefined;
    const head = Buffer.allocUnsafe(Math.min(queue.length, 17));
    queue.peek(head, head.length);
    const tag = head[0]!;
    switch (tag) {
      case TAG_FROM_SNAP:
      case TAG_TO_SNAP: {
        this.#metadata(tag);
        if (head.length < 5) return undefined;
        const length = head.readUInt32LE(1);
        if (length > MAX_SNAP_NAME) throw new DiffError('EDIFFFORMAT', `snapshot name length ${length} exceeds ${MAX_SNAP_NAME}`);
        if (queue.length < 5 + length) return undefined;
        queue.skip(5);
        const name = queue.take(length).toString('utf8');
        return tag === TAG_FROM_SNAP ? { kind: 'from-snap', name } : { kind: 'to-snap', name };
      }
      case TAG_SIZE: {
        this.#metadata(tag);
        if (head.length < 9) return undefined;
        queue.skip(9);
        this.#size = readU64(head, 1, 'image size');
        return { kind: 'size', size: this.#size };
      }
      case TAG_WRITE:
      case TAG_ZERO: {
        if (this.#size === undefined) throw new DiffError('EDIFFFORMAT', `data record '${String.fromCharCode(tag)}' before the size record`);
        if (head.length < 17) return undefined;
        const offset = readU64(head, 1, 'offset');
        const length = readU64(head, 9, 'length');
        if (offset + length > this.#size) throw new DiffError('EDIFFFORMAT', `record ${offset}+${length} ends past the image size ${this.#size}`);
        if (offset < this.#position) throw new DiffError('EDIFFFORMAT', `record at ${offset} goes back before ${this.#position}`);
        queue.skip(17);
        this.#inData = true;
        this.#position = offset + length;
        if (tag === TAG_ZERO) return { kind: 'zero', offset, length };
        if (length === 0) return { kind: 'data', offset, data: Buffer.alloc(0), last: true };
        this.#write = { offset, left: length };
        return this.next();
      }
      case TAG_END:
        queue.skip(1);
        this.#ended = true;
        return { kind: 'end' };
      default:
        throw new DiffError('EDIFFFORMAT', `unknown record tag 0x${tag.toString(16)}`);
    }
  }

  /** Call at end of input: throws if the stream stopped before its end record. */
  finish(): void {
    if (!this.#ended) throw new DiffError('EDIFFFORMAT', this.#bannerSeen ? 'diff is truncated: no end record' : 'diff is empty or truncated before its banner');
  }

  #metadata(tag: number): void {
    if (this.#inData) throw new DiffError('EDIFFFORMAT', `metadata record '${String.fromCharCode(tag)}' after data records`);
  }
}

function readU64(buf: Buffer, at: number, what: string): number {
  const value = buf.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new DiffError('EDIFFFORMAT', `${what} ${value} exceeds 2^53`);
  return Number(value);
}
