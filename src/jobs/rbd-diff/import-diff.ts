// import-diff: applies an `rbd diff v1` stream to a block device as it arrives: 'w' pieces
// become writes (a bounded number in flight), 'z' records become zeroes, 'e' flushes. The
// device is opened only once the stream's size is known (a file target can then be resized).

import type { BlockDevice } from '../../block/block-device.js';
import { throwIfAborted } from '../../core/errors.js';
import { DiffError } from './format.js';
import { RbdDiffParser } from './parser.js';

export interface ImportDiffOptions {
  /** Writes in flight at once. */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
}

export interface ImportDiffReport {
  readonly size: number;
  readonly fromSnap: string | undefined;
  readonly toSnap: string | undefined;
  readonly writtenBytes: number;
  readonly zeroedBytes: number;
}

/**
 * Reads the diff from `source` and applies it to the device `openTarget(size)` returns; the
 * device is flushed and closed before this resolves.
 */
export async function importDiff(
  source: AsyncIterable<Buffer>,
  openTarget: (size: number) => Promise<BlockDevice>,
  options: ImportDiffOptions = {},
): Promise<ImportDiffReport> {
  const { signal } = options;
  const parser = new RbdDiffParser();
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let device: BlockDevice | undefined;
  let fromSnap: string | undefined;
  let toSnap: string | undefined;
  let writtenBytes = 0;
  let zeroedBytes = 0;
  const start = async (op: () => Promise<void>): Promise<void> => {
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure) throw failure;
    const p: Promise<void> = op().then(
      () => void inFlight.delete(p),
      (err: unknown) => {
        inFlight.delete(p);
        failure ??= err;
      },
    );
    inFlight.add(p);
  };
  const target = (): BlockDevice => {
    if (!device) throw new DiffError('EDIFFFORMAT', 'data record before the size record');
    return device;
  };
  try {
    for await (const chunk of source) {
      throwIfAborted(signal);
      parser.push(chunk);
      for (let event = parser.next(); event; event = parser.next()) {
        switch (event.kind) {
          case 'from-snap':
            fromSnap = event.name;
            break;
          case 'to-snap':
            toSnap = event.name;
            break;
          case 'size':
            if (device) throw new DiffError('EDIFFFORMAT', 'second size record');
            device = await openTarget(event.size);
            break;
          case 'data': {
            const dev = target();
            const { offset, data } = event;
            await start(() => dev.write(offset, data, { signal }));
            writtenBytes += data.length;
            break;
          }
          case 'zero': {
            const dev = target();
            const { offset, length } = event;
            if (length > 0) await start(() => dev.writeZeroes(offset, length, { mayTrim: true, signal }));
            zeroedBytes += length;
            break;
          }
          case 'end':
            break;
          default:
            event satisfies never;
        }
      }
    }
    parser.finish();
    await Promise.all(inFlight);
    if (failure) throw failure;
    if (!device) throw new DiffError('EDIFFFORMAT', 'diff has no size record');
    await device.flush({ signal });
    return { size: parser.size!, fromSnap, toSnap, writtenBytes, zeroedBytes };
  } finally {
    await Promise.all(inFlight);
    await device?.close();
  }
}
