// AES-256-GCM for blobs: nonce (12 random bytes) | ciphertext | tag (16), with the blob's id
// and type byte as associated data. Through the addon (native/gcm.c: one expanded key, output
// straight into the caller's buffer) when it loads, else node:crypto with the same bytes.

import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { loadNative, type GcmHandle, type NativeFile } from '../core/native.js';

export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
/** Bytes sealing adds around a body. */
export const SEAL_OVERHEAD = NONCE_LENGTH + TAG_LENGTH;

export interface BlobCipher {
  /**
   * Writes nonce | ciphertext | tag to the start of `out` (plain.length + 28 bytes of room) and
   * returns that length. `plain` may be exactly out[12, 12 + plain.length) (sealed in place).
   */
  seal(id: Uint8Array, type: number, plain: Uint8Array, out: Uint8Array): number;
  /**
   * Decrypts `stored` (nonce | ciphertext | tag) into the start of `out` and returns true, or
   * false when it does not authenticate. `out` may be exactly stored[12, ...).
   */
  open(id: Uint8Array, type: number, stored: Uint8Array, out: Uint8Array): boolean;
}

export function createBlobCipher(key: Buffer): BlobCipher {
  let native: NativeFile | undefined;
  try {
    native = loadNative();
  } catch {
    native = undefined;
  }
  return native ? new NativeCipher(native, key) : new NodeCipher(key);
}

class NativeCipher implements BlobCipher {
  readonly #native: NativeFile;
  readonly #handle: GcmHandle;

  constructor(native: NativeFile, key: Buffer) {
    this.#native = native;
    this.#handle = native.gcmCreate(key);
  }

  seal(id: Uint8Array, type: number, plain: Uint8Array, out: Uint8Array): number {
    return this.#native.gcmSeal(this.#handle, id, type, plain, out);
  }

  open(id: Uint8Array, type: number, stored: Uint8Array, out: Uint8Array): boolean {
    return this.#native.gcmOpen(this.#handle, id, type, stored, out);
  }
}

/** node:crypto, for when the addon did not build: the same bytes, a copy more per blob. */
export class NodeCipher implements BlobCipher {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  seal(id: Uint8Array, type: number, plain: Uint8Array, out: Uint8Array): number {
    const target = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    const nonce = randomFillSync(Buffer.alloc(NONCE_LENGTH));
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce);
    cipher.setAAD(aad(id, type));
    // update() returns a new buffer, so plain may alias target[12, ...) safely.
    const body = cipher.update(plain);
    const rest = cipher.final();
    let w = nonce.copy(target, 0);
    w += body.copy(target, w);
    w += rest.copy(target, w);
    w += cipher.getAuthTag().copy(target, w);
    return w;
  }

  open(id: Uint8Array, type: number, stored: Uint8Array, out: Uint8Array): boolean {
    const view = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, view.subarray(0, NONCE_LENGTH));
    decipher.setAAD(aad(id, type));
    decipher.setAuthTag(view.subarray(view.length - TAG_LENGTH));
    const body = decipher.update(view.subarray(NONCE_LENGTH, view.length - TAG_LENGTH));
    try {
      decipher.final();
    } catch {
      return false;
    }
    Buffer.from(out.buffer, out.byteOffset, out.byteLength).set(body);
    return true;
  }
}

function aad(id: Uint8Array, type: number): Buffer {
  return Buffer.concat([id, Buffer.of(type)]);
}
