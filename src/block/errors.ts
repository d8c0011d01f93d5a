// Errors of the block layer. The codes are errno names because every consumer (NBD replies,
// the daemon API, jobs) already speaks errno; the single mapping to NBD numbers is in nbd/.

import { FleeceError } from '../core/errors.js';

export type BlockErrorCode =
  | 'EIO' // the medium or a child failed; data not known good
  | 'EPERM' // write to a read-only device
  | 'EINVAL' // request outside the device or misaligned
  | 'ENOSPC' // write past the end, or no room on the backing store
  | 'ENOTSUP' // e.g. fast-zero that would not be fast
  | 'ENOMEM'
  | 'EOVERFLOW'
  | 'ESHUTDOWN'; // device closed or closing

export class BlockError extends FleeceError {
  declare readonly code: BlockErrorCode;

  constructor(code: BlockErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Rejects a request that does not fit inside a device of `size` bytes. */
export function checkRange(size: number, offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new BlockError('EINVAL', `${what}: invalid range offset=${offset} length=${length}`);
  }
  if (offset + length > size) {
    throw new BlockError(
      what === 'write' || what === 'write-zeroes' ? 'ENOSPC' : 'EINVAL',
      `${what}: range ${offset}+${length} ends past the device size ${size}`,
    );
  }
}
