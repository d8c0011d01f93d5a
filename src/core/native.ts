// Typed access to the small N-API addon (native/fleece_native.c) for the Linux file calls Node's
// fs lacks: SEEK_DATA/SEEK_HOLE, fallocate, preadv2/pwritev2(RWF_NOWAIT), posix_fadvise,
// whole-file O_DIRECT writes from unaligned buffers, a writer thread for small writes, and
// AES-256-GCM into caller buffers.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { FleeceError } from './errors.js';

/** The addon's functions; all but writeDirect and writeBack synchronous, all throw on bad arguments or unexpected errno. */
export interface NativeFile {
  /** First data byte at or after offset, or -1 when only a hole remains (ENXIO). */
  seekData(fd: number, offset: number): number;
  /** First hole byte at or after offset (end of file counts as a hole), or -1 past the end. */
  seekHole(fd: number, offset: number): number;
  /** Deallocates the range (fallocate PUNCH_HOLE|KEEP_SIZE); error `code` is the errno name. */
  punchHole(fd: number, offset: number, length: number): void;
  /** Zeroes the range keeping it allocated (fallocate ZERO_RANGE|KEEP_SIZE). */
  zeroRange(fd: number, offset: number, length: number): void;
  /** Allocates blocks for the range without changing data or size (fallocate KEEP_SIZE). */
  allocate(fd: number, offset: number, length: number): void;
  /** Evicts clean cached pages of the range (POSIX_FADV_DONTNEED; length 0 = to the end). */
  dropCache(fd: number, offset: number, length: number): void;
  /** Starts readahead of the range (POSIX_FADV_WILLNEED). */
  willNeed(fd: number, offset: number, length: number): void;
  /** Reads from the page cache only: bytes read (0 at end of file), or -1 if it would block. */
  preadNoWait(fd: number, buffer: NodeJS.ArrayBufferView, bufferOffset: number, length: number, position: number): number;
  /** Writes without blocking: bytes written, or -1 if it would block or is unsupported. */
  pwriteNoWait(fd: number, buffer: NodeJS.ArrayBufferView, bufferOffset: number, length: number, position: number): number;
  /**
   * On the thread pool: writes buffer[0, length) as the whole content of `fd`, a file opened
   * with O_DIRECT, through an aligned bounce buffer (any buffer will do). Rejects with the
   * errno's name as `code`: EINVAL where the filesystem refuses direct I/O.
   */
  writeDirect(fd: number, buffer: NodeJS.ArrayBufferView, length: number): Promise<void>;
  /**
   * On the thread pool: fdatasync, then evicts the file's clean cached pages (POSIX_FADV_DONTNEED).
   * Rejects with the fdatasync errno's name as `code`. Keep `fd` open until it settles.
   */
  writeBack(fd: number): Promise<void>;
  /** The address of the view's first byte modulo the page size (see page-aligned.ts). */
  pageOffset(view: NodeJS.ArrayBufferView): number;
  /** Copies all of `source` to the start of `target` (memmove; throws if target is shorter). */
  copyInto(target: NodeJS.ArrayBufferView, source: NodeJS.ArrayBufferView): void;
  /** Starts a writer thread (native/file_writer.c); `onDone` runs on the event loop per finished write. */
  createWriter(onDone: (id: number, error: Error | null) => void): WriterHandle;
  /** Queues a pwrite of all of `buffer` at `position`; the caller keeps `buffer` alive until onDone(id). */
  writerSubmit(writer: WriterHandle, fd: number, buffer: NodeJS.ArrayBufferView, position: number, id: number): void;
  /** No more writes; the thread ends once the queued ones are done. */
  writerClose(writer: WriterHandle): void;
  /** An AES-256-GCM key, expanded once (native/gcm.c). */
  gcmCreate(key: NodeJS.ArrayBufferView): GcmHandle;
  /** Writes nonce | ciphertext | tag to the start of `out`, returns its length; `plain` may be out[12, ...). */
  gcmSeal(gcm: GcmHandle, id: NodeJS.ArrayBufferView, type: number, plain: NodeJS.ArrayBufferView, out: NodeJS.ArrayBufferView): number;
  /** Decrypts nonce | ciphertext | tag into the start of `out`; false when the tag does not authenticate. */
  gcmOpen(gcm: GcmHandle, id: NodeJS.ArrayBufferView, type: number, stored: NodeJS.ArrayBufferView, out: NodeJS.ArrayBufferView): boolean;
}

/** An opaque handle to a native writer thread. */
export type WriterHandle = { readonly __writer: unique symbol };
/** An opaque handle to an AES-256-GCM key in the addon. */
export type GcmHandle = { readonly __gcm: unique symbol };

// dist/src/core/native.js sits three levels below the repo root, src/core/native.ts two.
const CANDIDATES = ['../../../build/Release/fleece_native.node', '../../build/Release/fleece_native.node'];

function load(): NativeFile {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const relative of CANDIDATES) {
    const path = fileURLToPath(new URL(relative, import.meta.url));
    tried.push(path);
    if (!existsSync(path)) continue;
    try {
      return require(path) as NativeFile;
    } catch (err) {
      throw new FleeceError('ENATIVE', `cannot load native addon '${path}': run 'npm install' to rebuild it with node-gyp`, { cause: err });
    }
  }
  throw new FleeceError('ENATIVE', `native addon not built (looked for ${tried.map((p) => `'${p}'`).join(', ')}): run 'npm install' (node-gyp builds it)`);
}

let loaded: NativeFile | undefined;

/** The addon, loaded on first use so that importing this module never fails by itself. */
export function loadNative(): NativeFile {
  loaded ??= load();
  return loaded;
}

/**
 * Evicts a file's clean cached pages (POSIX_FADV_DONTNEED over the whole file). Only a hint:
 * a failure, or an addon that did not build, changes nothing for the caller.
 */
export function uncache(fd: number): void {
  try {
    loadNative().dropCache(fd, 0, 0);
  } catch {
    // the data is on disk either way; only the cache keeps it
  }
}

/**
 * Writes a file's dirty pages back (fdatasync) and then evicts its cached pages, both off the
 * event loop: eviction frees every page, which takes long enough to stall the caller. Without
 * the addon, only the write-back happens.
 */
export async function writeBackAndUncache(file: { readonly fd: number; datasync(): Promise<void> }): Promise<void> {
  let native: NativeFile;
  try {
    native = loadNative();
  } catch {
    return file.datasync();
  }
  return native.writeBack(file.fd);
}
