// Fits a metadata context's extents to a BLOCK_STATUS request: non-empty descriptors inside
// the requested range, one only with REQ_ONE, and at most 2^20 per chunk (spec limits).

import type { StatusDescriptor } from '../protocol/replies.js';
import type { MetaExtent } from './meta-context.js';

const MAX_DESCRIPTORS = 2 ** 20;

/** Descriptors covering at most `length` bytes from the request offset, at least one. */
export function clampExtents(extents: readonly MetaExtent[], length: number, reqOne: boolean): StatusDescriptor[] {
  const out: StatusDescriptor[] = [];
  let covered = 0;
  const limit = reqOne ? 1 : MAX_DESCRIPTORS;
  for (const e of extents) {
    if (covered >= length || out.length >= limit) break;
    const len = Math.min(e.length, length - covered);
    if (len <= 0) continue;
    out.push({ length: len, flags: e.flags >>> 0 });
    covered += len;
  }
  if (out.length === 0) out.push({ length, flags: 0 });
  return out;
}
