// Numbers and errors of Ceph's `rbd diff v1` stream (ceph doc/dev/rbd-diff.rst): a banner, then
// metadata records (from-snap, to-snap, size), then data records (write, zero) and an end tag.
// Integers are little-endian; strings are a le32 length then the bytes.

import { FleeceError } from '../../core/errors.js';

export const BANNER = Buffer.from('rbd diff v1\n', 'ascii');

export const TAG_FROM_SNAP = 0x66; // 'f'
export const TAG_TO_SNAP = 0x74; // 't'
export const TAG_SIZE = 0x73; // 's'
export const TAG_WRITE = 0x77; // 'w'
export const TAG_ZERO = 0x7a; // 'z'
export const TAG_END = 0x65; // 'e'

/** Longest snapshot name accepted (rbd's own limit when it reads a diff). */
export const MAX_SNAP_NAME = 4096;

/** Metadata of a diff: which snapshots it goes between, and the image size at its end. */
export interface DiffHeader {
  readonly fromSnap?: string;
  readonly toSnap?: string;
  readonly size: number;
}

export type DiffErrorCode =
  | 'EDIFFFORMAT' // the bytes are not a valid rbd diff v1 stream
  | 'EDIFFTARGET'; // the diff does not fit the target (size, snapshots)

export class DiffError extends FleeceError {
  declare readonly code: DiffErrorCode;

  constructor(code: DiffErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
