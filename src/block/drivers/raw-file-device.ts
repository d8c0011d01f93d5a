// A sparse raw image file as a BlockDevice: allocation from SEEK_DATA/SEEK_HOLE, zeroes and
// discards as fallocate holes, page-cache hits served without a thread-pool hop (raw-file-io.ts).

import { close as closeCallback, fstat, open as openCallback, ftruncate, unlink } from 'node:fs';
import { promisify } from 'node:util';
import { FleeceError, UsageError, throwIfAborted } from '../../core/errors.js';
import {
  DEFAULT_CAPABILITIES,
  type BlockCapabilities,
  type BlockDevice,
  type Extent,
  type IoOptions,
  type WriteOptions,
  type ZeroOptions,
} from '../block-device.js';
import { BlockError, checkRange } from '../errors.js';
import { loadNative, type NativeFile } from '../../core/native.js';
import { RawFileIo } from './raw-file-io.js';
import { isUnsupported, toBlockError } from './raw-file-errors.js';

export interface RawFileDeviceOptions {
  /** Open read-only: writes, zeroes and discards fail with EPERM. */
  readonly readOnly?: boolean;
  /** Create a new sparse file of this many bytes; fails with EEXIST if the path exists. */
  readonly create?: number;
}

/** blockStatus() answers at most this many extents per call; callers loop for the rest. */
const MAX_EXTENTS = 4096;
/** Chunk of the shared zero buffer used when the filesystem can't zero ranges itself. */
const ZERO_CHUNK = 1024 * 1024;
let zeroBuffer: Buffer | undefined;

const openFd = promisify(openCallback);
const closeFd = promisify(closeCallback);
const fstatFd = promisify(fstat);
const truncateFd = promisify(ftruncate);
const unlinkPath = promisify(unlink);

export class RawFileDevice implements BlockDevice {
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  /** The image path, for messages. */
  readonly path: string;
  /** The NOWAIT/pool I/O engine; `io.noWait = false` forces the pool path (tests, benchmarks). */
  readonly io: RawFileIo;
  readonly #fd: number;
  readonly #native: NativeFile;
  // What fallocate supports on this filesystem, learnt on first EOPNOTSUPP.
  #canPunch: boolean;
  #canZeroRange = true;
  #canAllocate = true;
  // Requests in flight on the fd; close() waits for them so that the fd number is never reused
  // under a pending pool read or write.
  #inflight = 0;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(path: string, fd: number, size: number, readOnly: boolean, canPunch: boolean, nativeFile: NativeFile) {
    this.path = path;
    this.#fd = fd;
    this.size = size;
    this.#native = nativeFile;
    this.#canPunch = canPunch;
    this.io = new RawFileIo(fd, nativeFile);
    this.capabilities = {
      ...DEFAULT_CAPABILITIES,
      readOnly,
      canTrim: canPunch,
      canZero: true,
      canFastZero: canPunch,
      canCache: true,
      canMultiConn: true,
      canBlockStatus: true,
    };
  }

  /** Opens (or with `create`, creates) a raw image file. */
  static async open(path: string, options: RawFileDeviceOptions = {}): Promise<RawFileDevice> {
    const nativeFile = loadNative();
    const readOnly = options.readOnly ?? false;
    const create = options.create;
    if (create !== undefined) {
      if (readOnly) throw new UsageError(`cannot create '${path}' read-only`);
      if (!Number.isSafeInteger(create) || create < 0) throw new UsageError(`invalid image size ${create}: expected a whole number of bytes`);
    }
    let fd: number;
    try {
      fd = await openFd(path, create !== undefined ? 'wx+' : readOnly ? 'r' : 'r+');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      const why = code === 'EEXIST' ? 'it already exists' : code === 'ENOENT' ? 'no such file' : (err as Error).message;
      throw new FleeceError(code, `cannot ${create !== undefined ? 'create' : 'open'} image '${path}': ${why}`, { cause: err });
    }
    try {
      if (create !== undefined) await truncateFd(fd, create);
      const stat = await fstatFd(fd);
      if (!stat.isFile()) throw new UsageError(`image '${path}' is not a regular file`);
      return new RawFileDevice(path, fd, stat.size, readOnly, !readOnly && probePunch(nativeFile, fd, stat.size), nativeFile);
    } catch (err) {
      await closeFd(fd).catch(() => undefined);
      if (create !== undefined) await unlinkPath(path).catch(() => undefined);
      if (err instanceof FleeceError) throw err;
      throw new FleeceError((err as NodeJS.ErrnoException).code ?? 'EIO', `cannot open image '${path}': ${(err as Error).message}`, { cause: err });
    }
  }

  async read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> {
    await this.readNow(offset, target, options);
  }

  readNow(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> | undefined {
    this.#check('read', offset, target.length, false, options);
    if (target.length === 0) return undefined;
    let pending: Promise<void> | undefined;
    try {
      pending = this.io.read(offset, target);
    } catch (err) {
      throw toBlockError(err, 'read', offset, false);
    }
    if (pending === undefined) return undefined;
    // Only a read that waits counts as in flight (close waits for it); one served at once is over.
    this.#inflight++;
    return pending.then(
      () => this.#done(),
      (err: unknown) => {
        this.#done();
        throw toBlockError(err, 'read', offset, false);
      },
    );
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.#check('write', offset, data.length, true, options);
    this.#inflight++;
    try {
      if (data.length > 0) await this.io.write(offset, data);
      if (options?.fua) await this.io.sync();
    } catch (err) {
      throw toBlockError(err, 'write', offset, true);
    } finally {
      this.#done();
    }
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.#check('write-zeroes', offset, length, true, options);
    this.#inflight++;
    try {
      if (length > 0 && !this.#zeroFast(offset, length, options?.mayTrim ?? false)) {
        if (options?.fastZero) throw new BlockError('ENOTSUP', `write-zeroes: no fast zeroing on the filesystem of '${this.path}'`);
        await this.#writeZeroBuffers(offset, length);
      }
      if (options?.fua) await this.io.sync();
    } catch (err) {
      throw toBlockError(err, 'write-zeroes', offset, true);
    } finally {
      this.#done();
    }
  }

  async discard(offset: number, length: number, options?: WriteOptions): Promise<void> {
    this.#check('discard', offset, length, true, options);
    this.#inflight++;
    try {
      if (length > 0 && this.#canPunch) this.#tryFallocate('punch', offset, length);
      if (options?.fua) await this.io.sync();
    } catch (err) {
      throw toBlockError(err, 'discard', offset, true);
    } finally {
      this.#done();
    }
  }

  async flush(options?: IoOptions): Promise<void> {
    this.#check('flush', 0, 0, false, options);
    this.#inflight++;
    try {
      await this.io.sync();
    } catch (err) {
      throw toBlockError(err, 'flush', 0, true);
    } finally {
      this.#done();
    }
  }

  async cache(offset: number, length: number, options?: IoOptions): Promise<void> {
    this.#check('cache', offset, length, false, options);
    if (length === 0) return;
    try {
      this.#native.willNeed(this.#fd, offset, length);
    } catch (err) {
      throw toBlockError(err, 'cache', offset, false);
    }
  }

  async blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]> {
    this.#check('block-status', offset, length, false, options);
    const end = offset + length;
    const extents: Extent[] = [];
    try {
      let position = offset;
      while (position < end && extents.length < MAX_EXTENTS) {
        const data = this.#native.seekData(this.#fd, position);
        const dataStart = data < 0 ? end : Math.min(data, end);
        if (dataStart > position) {
          extents.push({ offset: position, length: dataStart - position, hole: true, zero: true });
          position = dataStart;
          continue;
        }
        // seekHole is -1 only past the end of the file (truncated under us): the rest is hole.
        const hole = this.#native.seekHole(this.#fd, position);
        const dataEnd = hole < 0 ? end : Math.min(hole, end);
        extents.push({ offset: position, length: dataEnd - position, hole: false, zero: false });
        position = dataEnd;
      }
    } catch (err) {
      throw toBlockError(err, 'block-status', offset, false);
    }
    return extents;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inflight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      this.io.close();
      await closeFd(this.#fd);
    })();
    return this.#closing;
  }

  #check(what: string, offset: number, length: number, writes: boolean, options: IoOptions | undefined): void {
    if (this.#closing) throw new BlockError('ESHUTDOWN', `${what}: device '${this.path}' is closed`);
    throwIfAborted(options?.signal);
    if (writes && this.capabilities.readOnly) throw new BlockError('EPERM', `${what}: device '${this.path}' is read-only`);
    checkRange(this.size, offset, length, what);
  }

  #done(): void {
    if (--this.#inflight === 0 && this.#drained) this.#drained();
  }

  /** Zeroes without writing data when the filesystem can; false when it can't. */
  #zeroFast(offset: number, length: number, mayTrim: boolean): boolean {
    if (mayTrim && this.#canPunch && this.#tryFallocate('punch', offset, length)) return true;
    if (this.#canZeroRange && this.#tryFallocate('zero', offset, length)) return true;
    // tmpfs and others: punch then allocate again, so the range stays allocated (no hole).
    if (this.#canPunch && this.#canAllocate && this.#tryFallocate('punch', offset, length)) {
      if (this.#tryFallocate('allocate', offset, length)) return true;
      return mayTrim; // zeroed as a hole, which is fine only when trimming was allowed
    }
    return false;
  }

  /** Runs one fallocate mode; false (and remembers) when the filesystem lacks it. */
  #tryFallocate(mode: 'punch' | 'zero' | 'allocate', offset: number, length: number): boolean {
    try {
      if (mode === 'punch') this.#native.punchHole(this.#fd, offset, length);
      else if (mode === 'zero') this.#native.zeroRange(this.#fd, offset, length);
      else this.#native.allocate(this.#fd, offset, length);
      return true;
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      if (mode === 'punch') this.#canPunch = false;
      else if (mode === 'zero') this.#canZeroRange = false;
      else this.#canAllocate = false;
      return false;
    }
  }

  async #writeZeroBuffers(offset: number, length: number): Promise<void> {
    zeroBuffer ??= Buffer.alloc(ZERO_CHUNK);
    for (let done = 0; done < length; done += ZERO_CHUNK) {
      await this.io.write(offset + done, zeroBuffer.subarray(0, Math.min(ZERO_CHUNK, length - done)));
    }
  }
}

/** Punching a hole past the end of the file changes nothing and tells whether holes work here. */
function probePunch(nativeFile: NativeFile, fd: number, size: number): boolean {
  try {
    nativeFile.punchHole(fd, size, 1);
    return true;
  } catch (err) {
    if (isUnsupported(err)) return false;
    throw err;
  }
}
