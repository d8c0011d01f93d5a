// Turns plaintext blobs (chunks, index pages, index roots) into stored bytes and back:
// id = BLAKE3 (keyed when encrypted) of the plaintext; zstd kept only if smaller; AES-256-GCM
// with the id and type as associated data. Every read checks CRC32, the GCM tag and the hash.

import { loadNative } from '../core/native.js';
import { crc32 } from './crc32.js';
import { blake3, Blake3Hasher, Compressor, Decompressor, zstdBinding as zstd } from './native-packages.js';
import { createBlobCipher, NONCE_LENGTH, SEAL_OVERHEAD, type BlobCipher } from './gcm.js';
import { RepoError } from './errors.js';
import type { MasterKey } from './keys.js';

export const ID_LENGTH = 32;
/** The id of an all-zero slot: never stored, never a real hash (probability 2^-256). */
export const ZERO_ID = Buffer.alloc(ID_LENGTH);

export const BlobType = { chunk: 0, page: 1, root: 2 } as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

export const FLAG_ZSTD = 1;
export const FLAG_SEALED = 2;

export interface SealedBlob {
  readonly stored: Buffer;
  readonly flags: number;
  readonly rawLength: number;
  readonly crc: number;
}

export interface BlobRef {
  readonly id: Buffer;
  readonly type: number;
  readonly flags: number;
  readonly rawLength: number;
  readonly crc: number;
}

/** Most stored bytes a blob of `length` plaintext bytes can take (zstd bound, nonce, tag). */
export function storedBound(length: number): number {
  // ZSTD_COMPRESSBOUND from zstd.h, in JS: one native call per blob costs more than the sum.
  const small = length < 128 * 1024 ? (128 * 1024 - length) >> 11 : 0;
  return length + (length >> 8) + small + SEAL_OVERHEAD;
}

/** Where sealInto put a blob: its stored length and the fields a pack entry records. */
export interface SealedInto {
  readonly length: number;
  readonly flags: number;
  readonly crc: number;
}

/** Chunks at least this long are probed with a sample before zstd gets the whole of them. */
const PROBE_MIN = 32 * 1024;
const PROBE_PIECES = 4;
const PROBE_PIECE = 512;

export class BlobCodec {
  readonly #cipher: BlobCipher | undefined;
  // One zstd context each, reused: creating one per blob costs as much as compressing 64 KiB.
  readonly #compressor = new Compressor();
  readonly #decompressor = new Decompressor();
  readonly #probe = Buffer.alloc(PROBE_PIECES * PROBE_PIECE);
  readonly #probeOut = Buffer.alloc(storedBound(PROBE_PIECES * PROBE_PIECE));
  // The same zstd settings, driven directly so output lands in the caller's buffer (no copies).
  readonly #cctx = new zstd.CCtx();
  readonly #dctx = new zstd.DCtx();
  #scratch = Buffer.alloc(0);
  // Whether the last large blob compressed: if so the next one skips the probe.
  #lastCompressed = true;
  // Keyed BLAKE3, reset per id (reset keeps the key): one native object, not one per blob.
  readonly #keyedHasher: Blake3Hasher | undefined;

  constructor(key: MasterKey | null, level: number) {
    this.#cipher = key ? createBlobCipher(key.dataKey) : undefined;
    this.#keyedHasher = key ? Blake3Hasher.newKeyed(key.idKey) : undefined;
    this.#compressor.setParameters({ compressionLevel: level });
    this.#cctx.setParameter(zstd.CParameter.compressionLevel, level);
  }

  get encrypted(): boolean {
    return this.#cipher !== undefined;
  }

  /** Content id of plaintext: keyed BLAKE3 in an encrypted repository so ids leak nothing. */
  idOf(plain: Uint8Array): Buffer {
    if (!this.#keyedHasher) return blake3(plain);
    this.#keyedHasher.reset();
    return this.#keyedHasher.update(plain).digestBuffer();
  }

  seal(type: number, id: Buffer, plain: Uint8Array): SealedBlob {
    let body: Buffer = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
    let flags = 0;
    const packed = this.#worthCompressing(plain) ? this.#compressor.compress(plain) : undefined;
    if (packed && packed.length < plain.byteLength) {
      body = packed;
      flags |= FLAG_ZSTD;
    }
    if (packed) this.#noteCompressed(plain.byteLength, packed.length);
    if (this.#cipher) {
      const sealed = Buffer.allocUnsafe(body.length + SEAL_OVERHEAD);
      this.#cipher.seal(id, type, body, sealed);
      body = sealed;
      flags |= FLAG_SEALED;
    }
    return { stored: body, flags, rawLength: plain.byteLength, crc: crc32(body) };
  }

  /**
   * seal() that writes the stored bytes into `out` at `at` (which needs storedBound(plain)
   * bytes of room) instead of allocating: zstd compresses straight into the pack buffer.
   */
  sealInto(type: number, id: Buffer, plain: Uint8Array, out: Buffer, at: number): SealedInto {
    let flags = 0;
    // Sealed, the body goes where it will be encrypted in place: after the nonce.
    const bodyAt = this.#cipher ? at + NONCE_LENGTH : at;
    let length = 0;
    if (this.#worthCompressing(plain)) {
      length = this.#cctx.compress2(out.subarray(bodyAt), plain);
      if (length < plain.byteLength) flags |= FLAG_ZSTD;
      this.#noteCompressed(plain.byteLength, length);
    }
    if (this.#cipher) {
      // A raw body is encrypted straight from `plain`: no copy into the pack first.
      const body = flags & FLAG_ZSTD ? out.subarray(bodyAt, bodyAt + length) : plain;
      length = this.#cipher.seal(id, type, body, out.subarray(at));
      flags |= FLAG_SEALED;
    } else if (!(flags & FLAG_ZSTD)) {
      copyBytes(out.subarray(at), plain);
      length = plain.byteLength;
    }
    return { length, flags, crc: crc32(out.subarray(at, at + length)) };
  }

  #scratchOf(length: number): Buffer {
    if (this.#scratch.length < length) this.#scratch = Buffer.allocUnsafe(length);
    return this.#scratch;
  }

  /** Remembers whether a large blob compressed (by 3 % or more), for the next probe decision. */
  #noteCompressed(rawLength: number, packedLength: number): void {
    if (rawLength >= PROBE_MIN) this.#lastCompressed = packedLength < rawLength * 0.97;
  }

  /**
   * False when four 512-byte samples spread over a large blob do not compress (random data):
   * cheaper than compressing 64 KiB in vain, but a probe costs half as much as that again, so it
   * runs only after a blob that did not compress (disks come in long stretches of one kind).
   */
  #worthCompressing(plain: Uint8Array): boolean {
    if (plain.byteLength < PROBE_MIN || this.#lastCompressed) return true;
    const step = Math.floor(plain.byteLength / PROBE_PIECES);
    for (let i = 0; i < PROBE_PIECES; i++) this.#probe.set(plain.subarray(i * step, i * step + PROBE_PIECE), i * PROBE_PIECE);
    return this.#cctx.compress2(this.#probeOut, this.#probe) < this.#probe.length * 0.97;
  }

  /** Recovers and checks the plaintext; ECORRUPT names which check failed (crc32 first). */
  open(ref: BlobRef, stored: Buffer, where: string): Buffer {
    return this.#guarded(ref, stored, where, (what) => this.#open(ref, stored, what));
  }

  /**
   * open() that decompresses or decrypts into `out` at `at` (which needs ref.rawLength bytes of
   * room) and returns the checked plaintext: a view of `out`, or of `stored` when it was stored
   * as it is (neither compressed nor sealed).
   */
  openInto(ref: BlobRef, stored: Buffer, where: string, out: Buffer, at: number): Buffer {
    return this.#guarded(ref, stored, where, (what) => {
      // A raw sealed body is decrypted straight into place; a compressed one into scratch.
      const room = ref.flags & FLAG_ZSTD ? undefined : out.subarray(at, at + ref.rawLength);
      let body = this.#decrypt(ref, stored, what, room);
      if (ref.flags & FLAG_ZSTD) {
        const target = out.subarray(at, at + ref.rawLength);
        if (target.length !== ref.rawLength) throw new RepoError('EINVALID', `${what}: no room for ${ref.rawLength} bytes`);
        let n: number;
        try {
          n = this.#dctx.decompress(target, body);
        } catch (err) {
          throw new RepoError('ECORRUPT', `${what}: zstd decompression failed`, { cause: err });
        }
        if (n !== ref.rawLength) throw new RepoError('ECORRUPT', `${what}: length ${n} differs from recorded ${ref.rawLength}`);
        body = target;
      }
      return this.#check(ref, body, what);
    });
  }

  /**
   * Runs `recover` under the CRC32 policy. The content hash (and the GCM tag) catch any damage,
   * so CRC32 runs up front only where nothing stronger guards the next step (zstd on
   * unauthenticated bytes), and otherwise only once a check failed, to report damaged stored
   * bytes as such.
   */
  #guarded(ref: BlobRef, stored: Buffer, where: string, recover: (what: string) => Buffer): Buffer {
    const what = `${typeName(ref.type)} ${ref.id.toString('hex').slice(0, 16)} in ${where}`;
    const crcFailure = (): RepoError | undefined => (crc32(stored) !== ref.crc ? new RepoError('ECORRUPT', `${what}: crc32 mismatch (stored bytes damaged)`) : undefined);
    if (ref.flags & FLAG_ZSTD && !(ref.flags & FLAG_SEALED)) {
      const failure = crcFailure();
      if (failure) throw failure;
    }
    try {
      return recover(what);
    } catch (err) {
      throw crcFailure() ?? err;
    }
  }

  /**
   * The body of a stored blob: `stored` itself when not sealed, else its plaintext, decrypted
   * into `into` when given (it must fit exactly), else into the codec's scratch buffer when it
   * is compressed (zstd reads it next), else into a new buffer (the caller keeps it).
   */
  #decrypt(ref: BlobRef, stored: Buffer, what: string, into?: Buffer): Buffer {
    if (!(ref.flags & FLAG_SEALED)) return stored;
    if (!this.#cipher) throw new RepoError('ECORRUPT', `${what}: sealed blob in an unencrypted repository`);
    if (stored.length < SEAL_OVERHEAD) throw new RepoError('ECORRUPT', `${what}: sealed blob too short (${stored.length} bytes)`);
    const length = stored.length - SEAL_OVERHEAD;
    if (into && into.length !== length) throw new RepoError('ECORRUPT', `${what}: length ${length} differs from recorded ${ref.rawLength}`);
    const body = into ?? (ref.flags & FLAG_ZSTD ? this.#scratchOf(length) : Buffer.allocUnsafe(length)).subarray(0, length);
    if (!this.#cipher.open(ref.id, ref.type, stored, body)) throw new RepoError('ECORRUPT', `${what}: authentication failed (gcm tag mismatch)`);
    return body;
  }

  #check(ref: BlobRef, body: Buffer, what: string): Buffer {
    if (body.length !== ref.rawLength) throw new RepoError('ECORRUPT', `${what}: length ${body.length} differs from recorded ${ref.rawLength}`);
    if (!this.idOf(body).equals(ref.id)) throw new RepoError('ECORRUPT', `${what}: content hash mismatch`);
    return body;
  }

  #open(ref: BlobRef, stored: Buffer, what: string): Buffer {
    let body = this.#decrypt(ref, stored, what);
    if (ref.flags & FLAG_ZSTD) {
      try {
        body = this.#decompressor.decompress(body);
      } catch (err) {
        throw new RepoError('ECORRUPT', `${what}: zstd decompression failed`, { cause: err });
      }
    }
    return this.#check(ref, body, what);
  }
}

export function typeName(type: number): string {
  return type === BlobType.chunk ? 'chunk' : type === BlobType.page ? 'index page' : type === BlobType.root ? 'index root' : `blob type ${type}`;
}

/** True when every byte is zero (memcmp against a shared zero buffer). */
const ZEROES = Buffer.alloc(4 * 1024 * 1024);
export function isAllZero(data: Uint8Array): boolean {
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < view.length; off += ZEROES.length) {
    const n = Math.min(ZEROES.length, view.length - off);
    if (!view.subarray(off, off + n).equals(ZEROES.subarray(0, n))) return false;
  }
  return true;
}

let nativeCopy: ((target: Uint8Array, source: Uint8Array) => void) | null | undefined;

/**
 * target.set(source), through memcpy in the addon: blobs that stay raw go from one
 * SharedArrayBuffer (the batch) into another (the pack), where V8's own copy runs word by word
 * (see native copyInto). Without the addon, the slower copy.
 */
function copyBytes(target: Uint8Array, source: Uint8Array): void {
  if (nativeCopy === undefined) {
    try {
      const native = loadNative();
      nativeCopy = (t, s) => native.copyInto(t, s);
    } catch {
      nativeCopy = null;
    }
  }
  if (nativeCopy) nativeCopy(target, source);
  else target.set(source);
}
