// Any NBD export as a job source (qemu-nbd, a QEMU fleecing export, nbdkit, our own server).
// With a bitmap it reads only the extents qemu:dirty-bitmap:NAME marks and copies the rest from
// the disk's latest backup. QEMU owns its bitmaps: clearing or rotating them after a successful
// backup is the operator's job (qemu-img bitmap --clear, or QMP), so commit and abort do nothing.

import { NbdDevice } from '../../block/drivers/nbd-device.js';
import { describeError, FleeceError, UsageError } from '../../core/errors.js';
import { formatSize } from '../../core/size.js';
import { parseNbdUri, type NbdTarget } from '../../nbd/client/nbd-uri.js';
import type { ByteRange } from '../dirty-ranges.js';
import { pickParent, type JobSource, type OpenJobSourceOptions } from './job-source.js';
import { scanDirtyBitmap } from './nbd-bitmap-ranges.js';
import { DIRTY_BITMAP_PREFIX, listDirtyBitmaps } from './nbd-list-bitmaps.js';

/** The NBD source could not be opened or lacks what was asked of it. */
export class NbdSourceError extends FleeceError {
  constructor(code: 'ENBDSOURCE' | 'ENOBITMAP', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

interface Plan {
  readonly changed?: readonly ByteRange[];
  readonly parent?: string;
  readonly notices: string[];
}

export async function openNbdJobSource(uri: string, options: OpenJobSourceOptions): Promise<JobSource> {
  const target = parseNbdUri(uri);
  if (options.bitmap !== undefined && options.bitmap.length === 0) throw new UsageError('--bitmap needs a bitmap name');
  const time = new Date();
  // One connection at a time: qemu-nbd serves a single client unless started with -e.
  const plan: Plan = options.bitmap !== undefined ? await planIncremental(uri, target, options.bitmap, options) : { notices: [] };
  const device = await connecting(uri, () => NbdDevice.open(target, { signal: options.signal }));
  return {
    source: device,
    time,
    ...plan,
    checkpoint: options.bitmap !== undefined ? `${DIRTY_BITMAP_PREFIX}${options.bitmap}` : undefined,
    commit: async () => undefined,
    abort: async () => undefined,
    close: () => device.close(),
  };
}

/** Reads the bitmap (which must exist) and decides: incremental on the latest backup, or full and why. */
async function planIncremental(uri: string, target: NbdTarget, bitmap: string, options: OpenJobSourceOptions): Promise<Plan> {
  const { repo, disk, signal } = options;
  const context = `${DIRTY_BITMAP_PREFIX}${bitmap}`;
  const scan = await connecting(uri, () => scanDirtyBitmap(target, context, { signal }));
  if (!scan.ranges) {
    const offered = (await listDirtyBitmaps(target, { signal })).map((c) => `'${c.slice(DIRTY_BITMAP_PREFIX.length)}'`).join(', ');
    throw new NbdSourceError(
      'ENOBITMAP',
      `nbd export '${target.exportName}' at '${uri}' offers no dirty bitmap '${bitmap}' (context '${context}'); ` +
        (offered ? `it offers: ${offered}` : 'it offers no dirty bitmaps (qemu-nbd -B NAME, or block-export-add bitmaps=[NAME])'),
    );
  }
  const parent = pickParent(repo, disk, options.parent);
  if (!parent) return { notices: [`no earlier backup of disk '${disk}': full backup (bitmap '${bitmap}' not used)`] };
  if (parent.size !== scan.size) {
    return { notices: [`disk '${disk}' is ${scan.size} bytes, its backup ${parent.id.slice(0, 12)} ${parent.size}: full backup (bitmap '${bitmap}' not used)`] };
  }
  const dirty = scan.ranges.reduce((sum, r) => sum + r.length, 0);
  const notices = [`bitmap '${bitmap}': ${formatSize(dirty)} dirty in ${scan.ranges.length} ranges of ${formatSize(scan.size)}, incremental on ${parent.id.slice(0, 12)}`];
  // Whole chunks are read: a fleecing export whose copy-before-write filter has this bitmap refuses the clean parts.
  const chunk = repo.config.chunkSize;
  if (scan.ranges.some((r) => r.offset % chunk !== 0 || ((r.offset + r.length) % chunk !== 0 && r.offset + r.length !== scan.size))) {
    notices.push(`bitmap '${bitmap}' is finer than the ${formatSize(chunk)} chunks: whole chunks are read (a fleecing export with a copy-before-write bitmap refuses that; use a granularity of at least ${formatSize(chunk)})`);
  }
  return { changed: scan.ranges, parent: parent.id, notices };
}

/** Runs a connect step, turning any failure but cancellation into one line naming the source. */
async function connecting<T>(uri: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof FleeceError && err.code === 'EABORTED') throw err;
    throw new NbdSourceError('ENBDSOURCE', `cannot open nbd source '${uri}': ${describeError(err)}`, { cause: err });
  }
}
