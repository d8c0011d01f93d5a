// Turns plaintext blobs (chunks, index pages, index roots) into stored bytes and back:
// id = BLAKE3 (keyed when encrypted) of the plaintext; zstd kept only if smaller; AES-256-GCM
// with the id and type as associated data. Every read checks CRC32, the GCM tag and the hash.

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { blake3, Blake3Hasher } from '@napi-rs/blake-hash';
import { Compressor, Decompressor } from 'zstd-napi';
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

/** Chunks at least this long are probed with a sample before zstd gets the whole of them. */
const PROBE_MIN = 32 * 1024;
const PROBE_PIECES = 4;
const PROBE_PIECE = 2048;

export class BlobCodec {
  readonly #key: MasterKey | null;
  // One zstd context each, reused: creating one per blob costs as much as compressing 64 KiB.
  readonly #compressor = new Compressor();
  readonly #decompressor = new Decompressor();
  readonly #probe = Buffer.alloc(PROBE_PIECES * PROBE_PIECE);

  constructor(key: MasterKey | null, level: number) {
    this.#key = key;
    this.#compressor.setParameters({ compressionLevel: level });
  }

  get encrypted(): boolean {
    return this.#key !== null;
  }

  /** Content id of plaintext: keyed BLAKE3 in an encrypted repository so ids leak nothing. */
  idOf(plain: Uint8Array): Buffer {
    if (!this.#key) return blake3(plain);
    return Blake3Hasher.newKeyed(this.#key.idKey).update(plain).digestBuffer();
  }

  seal(type: number, id: Buffer, plain: Uint8Array): SealedBlob {
    let body: Buffer = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
    let flags = 0;
    const packed = this.#worthCompressing(plain) ? this.#compressor.compress(plain) : undefined;
    if (packed && packed.length < plain.byteLength) {
      body = packed;
      flags |= FLAG_ZSTD;
    }
    if (this.#key) {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', this.#key.dataKey, nonce);
      cipher.setAAD(aad(id, type));
      body = Buffer.concat([nonce, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
      flags |= FLAG_SEALED;
    }
    return { stored: body, flags, rawLength: plain.byteLength, crc: crc32(body) };
  }

  /** False when four 2 KiB samples spread over a large blob do not compress (random data). */
  #worthCompressing(plain: Uint8Array): boolean {
    if (plain.byteLength < PROBE_MIN) return true;
    const step = Math.floor(plain.byteLength / PROBE_PIECES);
    for (let i = 0; i < PROBE_PIECES; i++) this.#probe.set(plain.subarray(i * step, i * step + PROBE_PIECE), i * PROBE_PIECE);
    return this.#compressor.compress(this.#probe).length < this.#probe.length * 0.97;
  }

  /** Recovers and checks the plaintext; ECORRUPT names which check failed (crc32 first). */
  open(ref: BlobRef, stored: Buffer, where: string): Buffer {
    const what = `${typeName(ref.type)} ${ref.id.toString('hex').slice(0, 16)} in ${where}`;
    const crcFailure = (): RepoError | undefined => (crc32(stored) !== ref.crc ? new RepoError('ECORRUPT', `${what}: crc32 mismatch (stored bytes damaged)`) : undefined);
    // The content hash (and the GCM tag) catch any damage, so CRC32 runs up front only where
    // nothing stronger guards the next step (zstd on unauthenticated bytes), and otherwise only
    // once a check failed, to report damaged stored bytes as such.
    if (ref.flags & FLAG_ZSTD && !(ref.flags & FLAG_SEALED)) {
      const failure = crcFailure();
      if (failure) throw failure;
    }
    try {
      return this.#open(ref, stored, what);
    } catch (err) {
      throw crcFailure() ?? err;
    }
  }

  #open(ref: BlobRef, stored: Buffer, what: string): Buffer {
    let body = stored;
    if (ref.flags & FLAG_SEALED) {
      if (!this.#key) throw new RepoError('ECORRUPT', `${what}: sealed blob in an unencrypted repository`);
      if (body.length < 28) throw new RepoError('ECORRUPT', `${what}: sealed blob too short (${body.length} bytes)`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', this.#key.dataKey, body.subarray(0, 12));
        decipher.setAAD(aad(ref.id, ref.type));
        decipher.setAuthTag(body.subarray(body.length - 16));
        body = Buffer.concat([decipher.update(body.subarray(12, body.length - 16)), decipher.final()]);
      } catch (err) {
        throw new RepoError('ECORRUPT', `${what}: authentication failed (gcm tag mismatch)`, { cause: err });
      }
    }
    if (ref.flags & FLAG_ZSTD) {
      try {
        body = this.#decompressor.decompress(body);
      } catch (err) {
        throw new RepoError('ECORRUPT', `${what}: zstd decompression failed`, { cause: err });
      }
    }
    if (body.length !== ref.rawLength) throw new RepoError('ECORRUPT', `${what}: length ${body.length} differs from recorded ${ref.rawLength}`);
    if (!this.idOf(body).equals(ref.id)) throw new RepoError('ECORRUPT', `${what}: content hash mismatch`);
    return body;
  }
}

function aad(id: Buffer, type: number): Buffer {
  return Buffer.concat([id, Buffer.of(type)]);
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
