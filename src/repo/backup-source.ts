// What the backup engine reads: anything with a size and positional reads, optionally with
// allocation info (zero/hole extents are not read). A BlockDevice satisfies it; so does
// FileSource, a read-only raw image file.

import { open, type FileHandle } from 'node:fs/promises';
import type { Extent } from '../block/block-device.js';
import { RepoError } from './errors.js';

export interface BackupSource {
  readonly size: number;
  readonly capabilities?: { readonly canBlockStatus: boolean };
  /** Fills `target` with the bytes at offset. */
  read(offset: number, target: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>;
  /** Extents starting at offset (see BlockDevice.blockStatus); zero ones are not read. */
  blockStatus?(offset: number, length: number, options?: { signal?: AbortSignal }): Promise<Extent[]>;
}

/** A raw image file opened read-only. */
export class FileSource implements BackupSource {
  readonly size: number;
  readonly #handle: FileHandle;

  private constructor(handle: FileHandle, size: number) {
    this.#handle = handle;
    this.size = size;
  }

  static async open(path: string): Promise<FileSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw new RepoError('ENOTFOUND', `cannot open source '${path}': ${(err as Error).message}`, { cause: err });
    }
    const st = await handle.stat();
    return new FileSource(handle, st.size);
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    let done = 0;
    while (done < target.length) {
      const { bytesRead } = await this.#handle.read(target, done, target.length - done, offset + done);
      if (bytesRead === 0) {
        target.fill(0, done);
        return;
      }
      done += bytesRead;
    }
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}
