// The one place where errno errors from a raw image file become BlockErrors: what consumers
// (NBD replies, jobs) can act on is "no space", "not permitted", or "I/O error, see cause".

import { FleeceError } from '../../core/errors.js';
import { BlockError } from '../errors.js';

/** Maps an fs/addon error of `what` at offset to a BlockError, keeping the original as cause. */
export function toBlockError(err: unknown, what: string, offset: number, writes: boolean): FleeceError {
  if (err instanceof FleeceError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const detail = err instanceof Error ? err.message : String(err);
  const message = `${what} at offset ${offset}: ${detail}`;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return new BlockError('ENOSPC', message, { cause: err });
  if (writes && (code === 'EROFS' || code === 'EACCES' || code === 'EPERM')) return new BlockError('EPERM', message, { cause: err });
  if (code === 'ENOMEM') return new BlockError('ENOMEM', message, { cause: err });
  return new BlockError('EIO', message, { cause: err });
}

/** True for the errno names fallocate uses to say "this filesystem can't do that mode". */
export function isUnsupported(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EINVAL';
}
