// Any NBD export as a job source (qemu-nbd, a QEMU fleecing export, nbdkit, our own server).
// With a bitmap it reads only the extents qemu:dirty-bitmap:NAME marks and copies the rest from
// the disk's latest backup. QEMU owns its bitmaps: clearing or rotating them after a successful
// backup is the operator's job (qemu-img bitmap --clear, or QMP), so commit and abort do nothing.

import { NbdDevice } from '../../block/drivers/nbd-device.js';
import { describeError, FleeceError, UsageError } from '../../core/errors.js';
import { formatSize } from '../../core/size.js';
import { parseNbdUri } from '../../nbd/client/nbd-uri.js';
import { dirtyRanges, type ByteRange } from '../dirty-ranges.js';
import { pickParent, type JobSource, type OpenJobSourceOptions } from './job-source.js';
import { DIRTY_BITMAP_PREFIX, listDirtyBitmaps } from './nbd-list-bitmaps.js';

/** The NBD source could not be opened or lacks what was asked of it. */
export class NbdSourceError extends FleeceError {
  constructor(code: 'ENBDSOURCE' | 'ENOBITMAP', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export async function openNbdJobSource(uri: string, options: OpenJobSourceOptions): Promise<JobSource> {
  const { repo, disk, bitmap, signal } = options;
  const target = parseNbdUri(uri);
  if (bitmap !== undefined && bitmap.length === 0) throw new UsageError('--bitmap needs a bitmap name');
  const context = bitmap !== undefined ? `${DIRTY_BITMAP_PREFIX}${bitmap}` : undefined;
  const time = new Date();
  let device: NbdDevice;
  try {
    device = await NbdDevice.open(target, { metaContexts: context ? [context] : [], signal });
  } catch (err) {
    if (err instanceof FleeceError && err.code === 'EABORTED') throw err;
    throw new NbdSourceError('ENBDSOURCE', `cannot open nbd source '${uri}': ${describeError(err)}`, { cause: err });
  }
  try {
    const base = { source: device, time, close: () => device.close(), commit: async () => undefined, abort: async () => undefined };
    if (!context) return { ...base, notices: [] };
    if (!device.contexts.includes(context)) {
      // Close first: qemu-nbd serves one client at a time unless started with -e.
      await device.close();
      const offered = await listDirtyBitmaps(target, { signal });
      const names = offered.map((c) => `'${c.slice(DIRTY_BITMAP_PREFIX.length)}'`).join(', ');
      throw new NbdSourceError(
        'ENOBITMAP',
        `nbd export '${target.exportName}' at '${uri}' offers no dirty bitmap '${bitmap}' (context '${context}'); ` +
          (names ? `it offers: ${names}` : 'it offers no dirty bitmaps (qemu-nbd -B NAME, or block-export-add bitmaps=[NAME])'),
      );
    }
    const parent = pickParent(repo, disk, options.parent);
    const checkpoint = context;
    if (!parent) return { ...base, checkpoint, notices: [`no earlier backup of disk '${disk}': full backup (bitmap '${bitmap}' not used)`] };
    if (parent.size !== device.size) {
      return {
        ...base,
        checkpoint,
        notices: [`disk '${disk}' is ${device.size} bytes, its backup ${parent.id.slice(0, 12)} ${parent.size}: full backup (bitmap '${bitmap}' not used)`],
      };
    }
    const changed: ByteRange[] = await dirtyRanges(device, context, { signal });
    const dirty = changed.reduce((sum, r) => sum + r.length, 0);
    return {
      ...base,
      changed,
      parent: parent.id,
      checkpoint,
      notices: [`bitmap '${bitmap}': ${formatSize(dirty)} dirty in ${changed.length} ranges of ${formatSize(device.size)}, incremental on ${parent.id.slice(0, 12)}`],
    };
  } catch (err) {
    await device.close().catch(() => undefined);
    throw err;
  }
}
