// A Store in an S3-compatible bucket (AWS SDK v3), every key under one prefix. It does one
// request per call and no retries of its own: RetryStore and LimitStore wrap it. Errors keep a
// `retryable` flag so the retry wrapper can tell a flaky server from a refused request.

import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { throwIfAborted } from '../../core/errors.js';
import { RepoError } from '../errors.js';
import { checkKey, notFound, type GetOptions, type PutOptions, type Store, type StoreEntry, type StoreSignal, type StoreStat } from '../store.js';
import { readBody, readBodyInto } from './s3-body.js';
import { S3StoreError, isS3Status, s3Error } from './s3-errors.js';
import type { ReadsInto } from './reads-into.js';

export interface S3StoreOptions {
  readonly bucket: string;
  /** Prepended to every key; '' or a string ending in '/'. */
  readonly prefix?: string;
  /** An S3-compatible endpoint (radosgw, MinIO); defaults to AWS_ENDPOINT_URL, else AWS itself. */
  readonly endpoint?: string;
  readonly region?: string;
  /** A client to use instead of building one (tests); the store then never destroys it. */
  readonly client?: S3Client;
}

/**
 * Span size restore asks S3 for: each request costs ~3 ms of client CPU here (SDK middleware,
 * signing, a socket write), a 16 MiB body ~100 ms at one stream's pace, so overhead stays ~3%.
 */
const PREFERRED_READ_BYTES = 16 * 2 ** 20;

export class S3Store implements Store, ReadsInto {
  readonly preferredReadBytes = PREFERRED_READ_BYTES;
  readonly bucket: string;
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #ownsClient: boolean;

  constructor(options: S3StoreOptions) {
    const prefix = options.prefix ?? '';
    if (prefix !== '' && !prefix.endsWith('/')) throw new RepoError('EINVALID', `invalid s3 key prefix '${prefix}': expected '' or a string ending in '/'`);
    this.bucket = options.bucket;
    this.prefix = prefix;
    this.#ownsClient = options.client === undefined;
    this.#client = options.client ?? createS3Client({ endpoint: options.endpoint, region: options.region });
  }

  #key(key: string): string {
    checkKey(key);
    return this.prefix + key;
  }

  async put(key: string, data: Uint8Array, options: PutOptions = {}): Promise<{ written: boolean }> {
    const objectKey = this.#key(key);
    throwIfAborted(options.signal);
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: objectKey,
      Body: data,
      ContentLength: data.length,
      ...(options.ifAbsent ? { IfNoneMatch: '*' } : {}),
    });
    try {
      await this.#client.send(command, { abortSignal: options.signal });
      return { written: true };
    } catch (err) {
      // 412: the key exists. A retried put whose first attempt landed also ends here: still fine.
      if (options.ifAbsent && isS3Status(err, 412)) return { written: false };
      throw s3Error('put', this.bucket, objectKey, err, options.signal);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Buffer> {
    const objectKey = this.#key(key);
    throwIfAborted(options.signal);
    const range = options.range;
    // An empty range cannot be expressed in HTTP: check existence and return nothing.
    if (range && range.length <= 0) {
      await this.stat(key, options);
      return Buffer.alloc(0);
    }
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: objectKey,
      ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
    });
    try {
      const response = await this.#client.send(command, { abortSignal: options.signal });
      return await readBody(response.Body, response.ContentLength);
    } catch (err) {
      if (err instanceof S3StoreError) throw err;
      if (isS3Status(err, 404) && !isNoSuchBucket(err)) throw notFound(key, err);
      // 416: the range starts at or past the end of an existing object, which holds no such bytes.
      if (range && isS3Status(err, 416)) return Buffer.alloc(0);
      throw s3Error('get', this.bucket, objectKey, err, options.signal);
    }
  }

  /**
   * A ranged GET whose body streams straight into `target` (no per-request buffer, no concat).
   * The answer must be the range asked for: a 206 starting at `offset`, or a 200 of a whole
   * object that fits (offset 0); anything longer or elsewhere is refused, a short body retried.
   */
  async readInto(key: string, offset: number, target: Uint8Array, options: StoreSignal = {}): Promise<number> {
    const objectKey = this.#key(key);
    throwIfAborted(options.signal);
    if (target.length === 0) {
      await this.stat(key, options);
      return 0;
    }
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: objectKey, Range: `bytes=${offset}-${offset + target.length - 1}` });
    try {
      const response = await this.#client.send(command, { abortSignal: options.signal });
      const start = rangeStart(response.ContentRange);
      if (start !== offset && !(start === undefined && offset === 0)) {
        throw new S3StoreError(`s3 get of '${this.bucket}/${objectKey}' answered range '${response.ContentRange ?? '(whole object)'}' for bytes ${offset}-${offset + target.length - 1}`, { retryable: false });
      }
      return await readBodyInto(response.Body, response.ContentLength, target);
    } catch (err) {
      if (err instanceof S3StoreError) throw err;
      if (isS3Status(err, 404) && !isNoSuchBucket(err)) throw notFound(key, err);
      // 416: the range starts at or past the end of an existing object, which holds no such bytes.
      if (isS3Status(err, 416)) return 0;
      throw s3Error('get', this.bucket, objectKey, err, options.signal);
    }
  }

  async stat(key: string, options: StoreSignal = {}): Promise<StoreStat> {
    const objectKey = this.#key(key);
    throwIfAborted(options.signal);
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal: options.signal });
      return { size: head.ContentLength ?? 0, ...(head.LastModified ? { mtimeMs: head.LastModified.getTime() } : {}) };
    } catch (err) {
      if (isS3Status(err, 404)) throw notFound(key, err);
      throw s3Error('stat', this.bucket, objectKey, err, options.signal);
    }
  }

  async *list(prefix: string, options: StoreSignal = {}): AsyncIterable<StoreEntry> {
    let token: string | undefined;
    do {
      throwIfAborted(options.signal);
      const command = new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token });
      let page;
      try {
        page = await this.#client.send(command, { abortSignal: options.signal });
      } catch (err) {
        throw s3Error('list', this.bucket, this.prefix + prefix, err, options.signal);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.prefix)) continue;
        yield { key: object.Key.slice(this.prefix.length), size: object.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async delete(key: string, options: StoreSignal = {}): Promise<void> {
    const objectKey = this.#key(key);
    throwIfAborted(options.signal);
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal: options.signal });
    } catch (err) {
      if (isS3Status(err, 404) && !isNoSuchBucket(err)) return;
      throw s3Error('delete', this.bucket, objectKey, err, options.signal);
    }
  }

  /** Creates the bucket unless it exists (`fleece init`); needs s3:CreateBucket only then. */
  async ensureBucket(options: StoreSignal = {}): Promise<void> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: options.signal });
      return;
    } catch (err) {
      if (!isS3Status(err, 404)) throw s3Error('head-bucket', this.bucket, '', err, options.signal);
    }
    try {
      await this.#client.send(new CreateBucketCommand({ Bucket: this.bucket }), { abortSignal: options.signal });
    } catch (err) {
      const name = (err as { name?: string }).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw s3Error('create-bucket', this.bucket, '', err, options.signal);
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy();
  }
}

/** First byte of a `Content-Range: bytes START-END/TOTAL` header; undefined without one. */
function rangeStart(contentRange: string | undefined): number | undefined {
  const match = contentRange === undefined ? null : /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(contentRange.trim());
  return match ? Number(match[1]) : contentRange === undefined ? undefined : Number.NaN;
}

function isNoSuchBucket(err: unknown): boolean {
  return (err as { name?: string }).name === 'NoSuchBucket';
}

/**
 * An S3 client the way fleece wants one: the SDK's default credential chain and region
 * (AWS_* variables, AWS_PROFILE, ~/.aws), path-style addressing for a custom endpoint, no SDK
 * retries (RetryStore retries), checksums only where S3 requires them (radosgw rejects the rest).
 */
export function createS3Client(options: { endpoint?: string; region?: string } = {}): S3Client {
  const endpoint = options.endpoint ?? (process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined);
  const config: S3ClientConfig = {
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    // A region is mandatory for signing; S3-compatible servers ignore its value.
    region: options.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || (endpoint ? 'us-east-1' : undefined)),
  };
  return withoutNodeVersionWarning(() => new S3Client(config));
}

/** Builds a client without the SDK's Node-version deprecation warning on stderr (CLI output stays clean). */
function withoutNodeVersionWarning<T>(build: () => T): T {
  const name = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';
  const before = process.env[name];
  process.env[name] = 'true';
  try {
    return build();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

export { S3StoreError };
