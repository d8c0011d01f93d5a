// Errors about dirty bitmaps. A wrong incremental backup is the one unforgivable failure, so
// anything that would trust an inconsistent bitmap refuses with EBITMAP_INCONSISTENT.

import { FleeceError } from '../../core/errors.js';

export type BitmapErrorCode =
  | 'EBITMAP_INCONSISTENT' // found in-use after an unclean stop: only removal is allowed
  | 'EBITMAP_EXISTS'
  | 'EBITMAP_NOT_FOUND'
  | 'EBITMAP_INVALID' // bad granularity, name, size mismatch, corrupt file
  | 'EBITMAP_BUSY'; // in use by a snapshot

export class BitmapError extends FleeceError {
  declare readonly code: BitmapErrorCode;

  constructor(code: BitmapErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
