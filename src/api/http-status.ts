// The one place that maps errors to HTTP statuses for the daemon API.

import { FleeceError } from '../core/errors.js';

export function httpStatusFor(err: unknown): number {
  if (!(err instanceof FleeceError)) return 500;
  switch (err.code) {
    case 'EUSAGE':
    case 'EINVAL':
    case 'EBITMAP_INVALID':
      return 400;
    case 'EDISK_NOT_FOUND':
    case 'ESNAPSHOT_NOT_FOUND':
    case 'EBITMAP_NOT_FOUND':
    case 'ENOENT':
      return 404;
    case 'EDISK_EXISTS':
    case 'ESNAPSHOT_EXISTS':
    case 'EBITMAP_EXISTS':
    case 'EEXIST':
    case 'EBITMAP_INCONSISTENT':
    case 'EBITMAP_BUSY':
      return 409;
    default:
      return 500;
  }
}
