// Key management: a random 64-byte master key (32 for AES-256-GCM data sealing, 32 for keyed
// BLAKE3 ids) wrapped in key slots, each by a key-encryption key from scrypt(passphrase) or a
// key file. A wrong secret fails GCM authentication, which is how "wrong passphrase" is known.

import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import { RepoError } from './errors.js';
import { Blake3Hasher } from './native-packages.js';

export interface MasterKey {
  readonly dataKey: Buffer;
  readonly idKey: Buffer;
}

export type KeySlot =
  | { readonly kdf: 'scrypt'; readonly n: number; readonly r: number; readonly p: number; readonly salt: string; readonly wrapped: string }
  | { readonly kdf: 'keyfile'; readonly salt: string; readonly wrapped: string };

export interface Secret {
  readonly passphrase?: string;
  /** Contents of a key file: any bytes, at least 32. */
  readonly keyFile?: Buffer;
}

const SCRYPT = { n: 2 ** 15, r: 8, p: 1 };
const WRAP_AAD = Buffer.from('fleece master key v1');

export function generateMasterKey(): MasterKey {
  return { dataKey: randomBytes(32), idKey: randomBytes(32) };
}

function deriveKek(slot: Omit<KeySlot, 'wrapped'>, secret: Secret): Buffer | undefined {
  const salt = Buffer.from(slot.salt, 'base64');
  if (slot.kdf === 'scrypt') {
    if (secret.passphrase === undefined) return undefined;
    const s = slot as unknown as { n: number; r: number; p: number };
    return scryptSync(secret.passphrase.normalize('NFC'), salt, 32, { N: s.n, r: s.r, p: s.p, maxmem: 256 * s.n * s.r });
  }
  if (!secret.keyFile) return undefined;
  return Blake3Hasher.newKeyed(Blake3Hasher.deriveKey('fleece key file v1', salt)).update(secret.keyFile).digestBuffer();
}

/** Wraps `master` for one secret; a passphrase slot when one is given, else a key-file slot. */
export function createKeySlot(master: MasterKey, secret: Secret): KeySlot {
  const salt = randomBytes(32).toString('base64');
  const base = secret.passphrase !== undefined ? { kdf: 'scrypt' as const, ...SCRYPT, salt } : { kdf: 'keyfile' as const, salt };
  if (base.kdf === 'keyfile' && (!secret.keyFile || secret.keyFile.length < 32)) {
    throw new RepoError('EINVALID', `key file too short (${secret.keyFile?.length ?? 0} bytes): need at least 32`);
  }
  const kek = deriveKek(base, secret)!;
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(WRAP_AAD);
  const body = Buffer.concat([cipher.update(Buffer.concat([master.dataKey, master.idKey])), cipher.final()]);
  return { ...base, wrapped: Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64') } as KeySlot;
}

/** Unwraps the master key with whichever slot the secret opens; EBADKEY when none does. */
export function openMasterKey(slots: readonly KeySlot[], secret: Secret): MasterKey {
  let tried = false;
  for (const slot of slots) {
    const kek = deriveKek(slot, secret);
    if (!kek) continue;
    tried = true;
    const wrapped = Buffer.from(slot.wrapped, 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(0, 12));
      decipher.setAAD(WRAP_AAD);
      decipher.setAuthTag(wrapped.subarray(wrapped.length - 16));
      const plain = Buffer.concat([decipher.update(wrapped.subarray(12, wrapped.length - 16)), decipher.final()]);
      return { dataKey: plain.subarray(0, 32), idKey: plain.subarray(32, 64) };
    } catch {
      // GCM authentication failed: not this slot's secret.
    }
  }
  if (!tried) {
    throw new RepoError('EBADKEY', 'repository is encrypted: a passphrase (FLEECE_PASSWORD) or a key file (FLEECE_KEY_FILE) is required');
  }
  throw new RepoError('EBADKEY', 'wrong passphrase or key file: it does not unlock this repository');
}
