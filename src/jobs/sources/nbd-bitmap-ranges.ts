// Reads a qemu:dirty-bitmap:NAME context on a connection of its own that negotiates nothing
// else: a QEMU fleecing export (snapshot-access over copy-before-write with a bitmap) refuses
// base:allocation outside the bitmap, and the server answers every negotiated context per request.

import { BlockError } from '../../block/errors.js';
import { NbdClient } from '../../nbd/client/nbd-client.js';
import type { NbdTarget } from '../../nbd/client/nbd-uri.js';
import { CMD_BLOCK_STATUS } from '../../nbd/protocol/constants.js';
import { throwIfAborted } from '../../core/errors.js';
import { DIRTY_FLAG, type ByteRange } from '../dirty-ranges.js';

/** Longest range asked in one BLOCK_STATUS request (its length field is a u32). */
const MAX_STATUS_REQUEST = 2 ** 31;

export interface BitmapScan {
  /** Size of the export in bytes. */
  readonly size: number;
  /** Dirty ranges, adjacent ones merged; undefined when the server does not offer the context. */
  readonly ranges: ByteRange[] | undefined;
}

/** Connects, negotiates only `context`, and collects its dirty ranges over the whole export. */
export async function scanDirtyBitmap(target: NbdTarget, context: string, options: { signal?: AbortSignal } = {}): Promise<BitmapScan> {
  const { signal } = options;
  const client = await NbdClient.connect(target, { metaContexts: [context], signal });
  try {
    const { size } = client.info;
    const id = client.info.contexts.get(context);
    if (id === undefined) return { size, ranges: undefined };
    const ranges: ByteRange[] = [];
    let at = 0;
    while (at < size) {
      throwIfAborted(signal);
      const reply = await client.request(CMD_BLOCK_STATUS, 0, at, Math.min(size - at, MAX_STATUS_REQUEST), { signal });
      const descriptors = reply.get(id);
      if (!descriptors || descriptors.length < 2) throw new BlockError('EIO', `block-status: no extents for context '${context}' at offset ${at}`);
      for (let i = 0; i + 1 < descriptors.length && at < size; i += 2) {
        const length = Math.min(descriptors[i]!, size - at);
        if (length === 0) throw new BlockError('EIO', `block-status: zero-length extent for context '${context}' at offset ${at}`);
        if (descriptors[i + 1]! & DIRTY_FLAG) {
          const last = ranges[ranges.length - 1];
          if (last && last.offset + last.length === at) ranges[ranges.length - 1] = { offset: last.offset, length: last.length + length };
          else ranges.push({ offset: at, length });
        }
        at += length;
      }
    }
    return { size, ranges };
  } finally {
    await client.close();
  }
}
