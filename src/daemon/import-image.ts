// Copies a raw image into a new sparse disk: only extents that hold data are read and written,
// so a mostly empty 10 GiB image costs what it holds.

import type { BlockDevice } from '../block/block-device.js';
import { RawFileDevice } from '../block/drivers/raw-file-device.js';
import { throwIfAborted } from '../core/errors.js';

const PIECE = 4 * 2 ** 20;

/** Copies every data extent of `source` into `target` (which must be at least as large). */
export async function copyDataExtents(source: BlockDevice, target: BlockDevice, options: { signal?: AbortSignal } = {}): Promise<number> {
  let copied = 0;
  const buffer = Buffer.allocUnsafe(PIECE);
  for (let offset = 0; offset < source.size; ) {
    throwIfAborted(options.signal);
    const [extent] = await source.blockStatus(offset, source.size - offset, options);
    const length = extent!.length;
    if (!extent!.zero) {
      for (let at = offset; at < offset + length; at += PIECE) {
        const piece = buffer.subarray(0, Math.min(PIECE, offset + length - at));
        await source.read(at, piece, options);
        await target.write(at, piece, options);
        copied += piece.length;
      }
    }
    offset += length;
  }
  return copied;
}

/** Size of a raw image file, for `disk create --from` without --size. */
export async function imageSize(path: string): Promise<number> {
  const dev = await RawFileDevice.open(path, { readOnly: true });
  try {
    return dev.size;
  } finally {
    await dev.close();
  }
}
