// The client-side mapping of NBD error values (from a server's reply) back to BlockError codes,
// the inverse of protocol/errno.ts.

import type { BlockErrorCode } from '../../block/errors.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
} from '../protocol/constants.js';

const BY_ERRNO: ReadonlyMap<number, BlockErrorCode> = new Map([
  [NBD_EPERM, 'EPERM'],
  [NBD_EIO, 'EIO'],
  [NBD_ENOMEM, 'ENOMEM'],
  [NBD_EINVAL, 'EINVAL'],
  [NBD_ENOSPC, 'ENOSPC'],
  [NBD_EOVERFLOW, 'EOVERFLOW'],
  [NBD_ENOTSUP, 'ENOTSUP'],
  [NBD_ESHUTDOWN, 'ESHUTDOWN'],
]);

/** BlockError code for an NBD error value; values the spec does not define become EIO. */
export function blockCodeFor(errno: number): BlockErrorCode {
  return BY_ERRNO.get(errno) ?? 'EIO';
}
