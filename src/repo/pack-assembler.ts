// Builds pack objects inside a chunk worker: blobs are sealed straight into a reused pack
// buffer, and a finished pack gets its id there too, so the main thread only uploads bytes it
// never copies or reads. Same pack format as PackWriter.
//
// Pack buffers are SharedArrayBuffers numbered by slot: the main thread receives each one once
// and afterwards only its slot number. (A buffer transferred with every pack arrives as new
// external memory each time, and V8 answers that with a full garbage collection, about two per
// pack.)

import { pageAlignedBuffer } from '../core/page-aligned.js';
import { storedBound, type BlobCodec } from './blob-codec.js';
import { encodeTrailer, packHeader, packIdOf, PACK_HEADER_SIZE, type PackEntry } from './pack-format.js';

/**
 * A finished pack: `buf` (the assembler's buffer `slot`) holds it in [offset, offset + length),
 * at a page boundary (so a local store writes it to disk with O_DIRECT without a bounce copy);
 * the trailer starts `trailerAt` bytes into the pack.
 */
export interface AssembledPack {
  readonly slot: number;
  readonly buf: SharedArrayBuffer;
  readonly offset: number;
  readonly length: number;
  readonly trailerAt: number;
  readonly id: string;
}

export class PackAssembler {
  readonly #codec: BlobCodec;
  readonly #targetSize: number;
  // Pack buffers by slot (page-aligned views of SharedArrayBuffers), and the slots free for the
  // next pack (the main thread hands uploaded ones back). Never dropped: their number is bounded
  // by the packs in flight.
  readonly #slabs: Buffer[] = [];
  readonly #free: number[] = [];
  // The open pack: its buffer, fill level, entries so far.
  #buf: Buffer | undefined;
  #slot = -1;
  #size = PACK_HEADER_SIZE;
  #entries: PackEntry[] = [];

  constructor(codec: BlobCodec, targetSize: number) {
    this.#codec = codec;
    this.#targetSize = targetSize;
  }

  /** Seals `plain` into the open pack; returns the stored length and any pack it finished. */
  add(id: Buffer, type: number, plain: Uint8Array, finished: AssembledPack[]): number {
    const bound = storedBound(plain.byteLength);
    if (this.#buf && this.#size + bound > this.#buf.length) {
      // A blob larger than the room left (an index root, say): close the pack early, or swap
      // an empty buffer for a larger one.
      const done = this.finish();
      if (done) finished.push(done);
      else this.recycle(this.#slot);
      this.#buf = undefined;
    }
    const buf = (this.#buf ??= this.#start(bound));
    const sealed = this.#codec.sealInto(type, id, plain, buf, this.#size);
    this.#entries.push({ id: Buffer.from(id), type, flags: sealed.flags, offset: this.#size, storedLength: sealed.length, rawLength: plain.byteLength, crc: sealed.crc });
    this.#size += sealed.length;
    if (this.#size >= this.#targetSize) finished.push(this.finish()!);
    return sealed.length;
  }

  /** Closes the open pack (if any blob is in it): header, trailer, id. */
  finish(): AssembledPack | undefined {
    const buf = this.#buf;
    if (!buf || this.#entries.length === 0) return undefined;
    const trailer = encodeTrailer(this.#entries);
    const trailerAt = this.#size;
    let out = buf;
    let slot = this.#slot;
    if (trailerAt + trailer.length > buf.length) {
      slot = this.#take(trailerAt + trailer.length);
      out = this.#slabs[slot]!;
      buf.copy(out, 0, 0, trailerAt);
      this.recycle(this.#slot);
    }
    trailer.copy(out, trailerAt);
    const length = trailerAt + trailer.length;
    const id = packIdOf(out.subarray(0, PACK_HEADER_SIZE), trailer);
    this.#buf = undefined;
    this.#size = PACK_HEADER_SIZE;
    this.#entries = [];
    return { slot, buf: out.buffer as SharedArrayBuffer, offset: out.byteOffset, length, trailerAt, id };
  }

  /** Takes back a pack buffer once it is uploaded. */
  recycle(slot: number): void {
    if (this.#slabs[slot] && !this.#free.includes(slot)) this.#free.push(slot);
  }

  /** Room for a full pack: the target, one more blob past it, and a trailer for small blobs. */
  #capacity(bound: number): number {
    return this.#targetSize + Math.max(bound, storedBound(1 << 20)) + (this.#targetSize >> 6);
  }

  /** A buffer for a new pack, its header written. */
  #start(bound: number): Buffer {
    this.#slot = this.#take(this.#capacity(bound));
    const buf = this.#slabs[this.#slot]!;
    const header = packHeader();
    header.copy(buf, 0);
    return buf;
  }

  /** A free slot whose buffer holds `need` bytes, or a new one. */
  #take(need: number): number {
    const at = this.#free.findIndex((slot) => this.#slabs[slot]!.length >= need);
    if (at >= 0) return this.#free.splice(at, 1)[0]!;
    this.#slabs.push(pageAlignedBuffer(need, true));
    return this.#slabs.length - 1;
  }
}
