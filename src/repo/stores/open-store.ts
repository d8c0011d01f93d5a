// Turns a repository location into a Store: `s3://BUCKET[/PREFIX]` is an S3 bucket behind
// retries and a concurrency limit; anything else is a local directory. Environment: AWS_* for
// the endpoint/region/credentials, FLEECE_S3_*, and FLEECE_CACHE_DIR (where the catalog lives).

import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { RepoError } from '../errors.js';
import type { Store } from '../store.js';
import { LimitStore } from './limit-store.js';
import { LocalStore } from './local-store.js';
import { RetryStore } from './retry-store.js';

export interface S3Location {
  readonly bucket: string;
  /** '' or ending in '/'. */
  readonly prefix: string;
}

export interface OpenStoreOptions {
  /** Create the bucket when it does not exist (`fleece init`). */
  readonly create?: boolean;
  readonly signal?: AbortSignal;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses `s3://BUCKET[/PREFIX]`; undefined for a location that is not an S3 URL. */
export function parseS3Location(location: string): S3Location | undefined {
  if (!location.startsWith('s3://')) return undefined;
  const rest = location.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
  if (!BUCKET.test(bucket)) {
    throw new RepoError('EINVALID', `invalid s3 bucket '${bucket}' in '${location}': expected 3-63 characters of [a-z0-9.-]`);
  }
  if (path.split('/').some((s) => s === '.' || s === '..' || s === '') && path !== '') {
    throw new RepoError('EINVALID', `invalid s3 key prefix '${path}' in '${location}'`);
  }
  return { bucket, prefix: path === '' ? '' : `${path}/` };
}

function envInt(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

/** Where this host keeps an S3 repository's catalog; undefined when FLEECE_CACHE_DIR=none. */
export function s3CacheDir(location: S3Location): string | undefined {
  const base = process.env.FLEECE_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'fleece');
  if (base === 'none') return undefined;
  const endpoint = process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || 'aws';
  const id = createHash('sha256').update(`${endpoint}\n${location.bucket}\n${location.prefix}`).digest('hex').slice(0, 16);
  return join(base, 's3', `${location.bucket}-${id}`);
}

/** Where this host keeps the repository's SQLite catalog: in the directory, or in the S3 cache dir. */
export function catalogPathFor(location: string): string {
  const s3 = parseS3Location(location);
  if (!s3) return join(location, '.catalog.sqlite');
  const cacheDir = s3CacheDir(s3);
  return cacheDir ? join(cacheDir, '.catalog.sqlite') : ':memory:';
}

/** Opens the store a repository location names; `create` makes the directory or bucket. */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store> {
  const s3 = parseS3Location(location);
  if (!s3) {
    if (options.create) await mkdir(location, { recursive: true });
    return new LocalStore(location);
  }
  // The AWS SDK is large: load it only for s3:// locations, so local commands start fast.
  const { S3Store } = await import('./s3-store.js');
  const raw = new S3Store({ bucket: s3.bucket, prefix: s3.prefix });
  // Retry outside the limit: a request backing off does not hold one of the slots.
  const store = new RetryStore(new LimitStore(raw, envInt('FLEECE_S3_CONCURRENCY', 16)), { attempts: envInt('FLEECE_S3_ATTEMPTS', 6) });
  try {
    if (options.create) await raw.ensureBucket(options);
    // The host's catalog (see catalogPathFor) is the cache of everything immutable: manifests
    // and pack trailers are fetched once per host, so no object cache sits in front of S3.
    const cacheDir = s3CacheDir(s3);
    if (cacheDir) await mkdir(cacheDir, { recursive: true });
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
