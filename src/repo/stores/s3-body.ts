// S3 response bodies without the SDK's buffering: in Node the body is the HTTP response stream,
// so its chunks are copied once, as they arrive, into the buffer that keeps them (a new one of
// the content-length for get(), the caller's span buffer for readInto()).

import { Readable, finished } from 'node:stream';
import { S3StoreError } from './s3-errors.js';

/** A response body as one Buffer: unzeroed, of its content-length, filled as chunks arrive. */
export async function readBody(body: unknown, length: number | undefined): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  if (!(body instanceof Readable) || length === undefined || !Number.isSafeInteger(length) || length < 0) {
    const bytes = await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  const out = Buffer.allocUnsafe(length);
  await readBodyInto(body, length, out); // all `length` bytes, or it rejects
  return out;
}

/**
 * Streams a response body into `target` from byte 0; resolves the bytes written. A body longer
 * than `target` or than its content-length is refused; one that ends short of its
 * content-length (a dropped connection) rejects retryable, like any request without an answer.
 */
export async function readBodyInto(body: unknown, length: number | undefined, target: Uint8Array): Promise<number> {
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0 || length > target.length)) {
    destroy(body);
    throw new S3StoreError(`s3 response content-length ${length} does not fit the ${target.length} bytes asked for`, { retryable: false });
  }
  const limit = length ?? target.length;
  if (!body) return checkEnd(0, length);
  if (!(body instanceof Readable)) {
    const bytes = await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    if (bytes.length > limit) throw tooLong(limit);
    target.set(bytes);
    return checkEnd(bytes.length, length);
  }
  return new Promise<number>((resolve, reject) => {
    let at = 0;
    let failure: Error | undefined;
    const onData = (chunk: Buffer): void => {
      if (at + chunk.length > limit) {
        failure = tooLong(limit);
        body.destroy(failure);
        return;
      }
      target.set(chunk, at);
      at += chunk.length;
    };
    body.on('data', onData);
    const cleanup = finished(body, (err) => {
      cleanup();
      body.off('data', onData);
      if (failure ?? err) reject(failure ?? err);
      else {
        try {
          resolve(checkEnd(at, length));
        } catch (short) {
          reject(short);
        }
      }
    });
  });
}

function checkEnd(at: number, length: number | undefined): number {
  if (length !== undefined && at !== length) throw new S3StoreError(`s3 response body ended after ${at} of ${length} bytes`, { retryable: true });
  return at;
}

function tooLong(limit: number): S3StoreError {
  return new S3StoreError(`s3 response body longer than the ${limit} bytes expected`, { retryable: false });
}

function destroy(body: unknown): void {
  if (body instanceof Readable) body.destroy();
}
