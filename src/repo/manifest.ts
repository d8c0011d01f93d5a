// A backup's manifest (`manifests/<id>`): its metadata and the id of its index root. Written
// last, with put-if-absent: a backup exists exactly when its manifest does. Sealed with the
// data key in an encrypted repository (disk names and tags are private too).

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { crc32 } from './crc32.js';
import { RepoError } from './errors.js';
import type { MasterKey } from './keys.js';

export interface BackupCounts {
  readonly slots: number;
  readonly zeroSlots: number;
  /** Chunks this backup stored that the repository lacked. */
  readonly newChunks: number;
  /** Stored (compressed, sealed) bytes of those new chunks. */
  readonly newBytes: number;
  readonly reusedChunks: number;
}

export interface Manifest {
  readonly version: 1;
  readonly id: string;
  readonly disk: string;
  /** Disk size in bytes. */
  readonly size: number;
  readonly chunkSize: number;
  /** ISO 8601 time the backup's point-in-time view was taken. */
  readonly time: string;
  readonly parent: string | null;
  readonly tags: readonly string[];
  /** Opaque checkpoint of the source (e.g. a dirty-bitmap generation) for the next incremental. */
  readonly checkpoint: string | null;
  readonly counts: BackupCounts;
  /** Hex id of the index root blob (the list of page ids). */
  readonly root: string;
  readonly pageCount: number;
  readonly host: string;
}

const MAGIC = Buffer.from('FLMANIF1');
const HEADER = 16; // magic(8) flags(1) reserved(3) crc32-of-body(4)

export function manifestKey(id: string): string {
  return `manifests/${id}`;
}

export function encodeManifest(manifest: Manifest, key: MasterKey | null): Buffer {
  let body = Buffer.from(JSON.stringify(manifest));
  if (key) {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.dataKey, nonce);
    cipher.setAAD(Buffer.from(`manifest ${manifest.id}`));
    body = Buffer.concat([nonce, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
  }
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header);
  header.writeUInt8(key ? 1 : 0, 8);
  header.writeUInt32LE(crc32(body), 12);
  return Buffer.concat([header, body]);
}

export function decodeManifest(id: string, bytes: Buffer, key: MasterKey | null): Manifest {
  const what = `manifest ${id}`;
  if (bytes.length < HEADER || !bytes.subarray(0, 8).equals(MAGIC)) throw new RepoError('ECORRUPT', `${what}: bad magic`);
  let body = bytes.subarray(HEADER);
  if (crc32(body) !== bytes.readUInt32LE(12)) throw new RepoError('ECORRUPT', `${what}: crc32 mismatch`);
  if (bytes.readUInt8(8) === 1) {
    if (!key) throw new RepoError('ECORRUPT', `${what}: sealed manifest in an unencrypted repository`);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.dataKey, body.subarray(0, 12));
      decipher.setAAD(Buffer.from(`manifest ${id}`));
      decipher.setAuthTag(body.subarray(body.length - 16));
      body = Buffer.concat([decipher.update(body.subarray(12, body.length - 16)), decipher.final()]);
    } catch (err) {
      throw new RepoError('ECORRUPT', `${what}: authentication failed`, { cause: err });
    }
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(body.toString('utf8')) as Manifest;
  } catch (err) {
    throw new RepoError('ECORRUPT', `${what}: not valid json`, { cause: err });
  }
  if (manifest.id !== id) throw new RepoError('ECORRUPT', `${what}: records a different id '${manifest.id}'`);
  return manifest;
}
