// Reading a range straight into a caller's buffer: restore reuses its span buffers, so a store
// that can fill one (a file read, an HTTP body streamed in place) saves an allocation and a copy
// per span. Wrappers forward it; over a store without it they fall back to get() and one copy.

import type { Store, StoreSignal } from '../store.js';

/** Stores that can read a range into a caller's buffer (restore reuses its span buffers). */
export interface ReadsInto {
  /** Reads bytes [offset, offset + target.length) of an object into target; resolves how many exist. */
  readInto(key: string, offset: number, target: Uint8Array, options?: StoreSignal): Promise<number>;
  /** Bytes one read should cover when the caller can choose (S3: requests cost ms each); unset: no preference. */
  readonly preferredReadBytes?: number | undefined;
}

export function canReadInto(store: Store): store is Store & ReadsInto {
  return typeof (store as Partial<ReadsInto>).readInto === 'function';
}

/** A wrapped store's preferredReadBytes, for wrappers to pass on. */
export function preferredReadBytes(store: Store): number | undefined {
  return (store as Partial<ReadsInto>).preferredReadBytes;
}

/** `store.readInto` when it has one, else a ranged get copied into `target`. */
export async function readIntoVia(store: Store, key: string, offset: number, target: Uint8Array, options: StoreSignal = {}): Promise<number> {
  if (canReadInto(store)) return store.readInto(key, offset, target, options);
  const data = await store.get(key, { range: { offset, length: target.length }, signal: options.signal });
  const n = Math.min(data.length, target.length);
  target.set(n === data.length ? data : data.subarray(0, n));
  return n;
}
