// The repository config object (`config` key): format version, chunk and pack sizes, and the
// key slots that unwrap the master key. Plain JSON: it must be readable before any key is known.

import { isPowerOfTwo } from '../core/size.js';
import { RepoError } from './errors.js';
import type { KeySlot } from './keys.js';

export const FORMAT_VERSION = 1;
export const MIN_CHUNK_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
export const CONFIG_KEY = 'config';

export interface RepoConfig {
  readonly version: number;
  /** Random 128-bit hex id; names cache directories. */
  readonly id: string;
  readonly createdAt: string;
  /** Bytes per slot; a power of two in [16 KiB, 4 MiB]. */
  readonly chunkSize: number;
  /** A pack is closed once its blobs reach this many bytes. */
  readonly packSize: number;
  readonly compression: { readonly algorithm: 'zstd'; readonly level: number };
  /** null: ids are plain BLAKE3 and blobs are not sealed. */
  readonly encryption: null | { readonly cipher: 'aes-256-gcm'; readonly idHash: 'blake3-keyed'; readonly keys: readonly KeySlot[] };
}

/** Rejects a chunk size outside the allowed powers of two, quoting it. */
export function checkChunkSize(chunkSize: number): void {
  if (!isPowerOfTwo(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new RepoError('EINVALID', `invalid chunk size ${chunkSize}: expected a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`);
  }
}

export function encodeConfig(config: RepoConfig): Buffer {
  return Buffer.from(`${JSON.stringify(config, null, 2)}\n`);
}

export function decodeConfig(bytes: Buffer): RepoConfig {
  let config: RepoConfig;
  try {
    config = JSON.parse(bytes.toString('utf8')) as RepoConfig;
  } catch (err) {
    throw new RepoError('ECORRUPT', 'repository config is not valid json', { cause: err });
  }
  if (config.version !== FORMAT_VERSION) {
    throw new RepoError('EINVALID', `unsupported repository format version ${String(config.version)}: this fleece reads version ${FORMAT_VERSION}`);
  }
  checkChunkSize(config.chunkSize);
  if (!Number.isSafeInteger(config.packSize) || config.packSize < config.chunkSize) {
    throw new RepoError('ECORRUPT', `invalid pack size ${String(config.packSize)} in repository config`);
  }
  return config;
}
