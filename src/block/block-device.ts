// The seam of the data plane: every driver (raw file, memory, NBD client, backup) and every
// filter (dirty tracker, copy-before-write, snapshot access) is a BlockDevice. A filter
// implements what it changes and forwards the rest to its child (see block/filters/).

/** What a device can do; consumers ask instead of assuming (nbdkit's can_* callbacks). */
export interface BlockCapabilities {
  /** Writes, zeroes and discards are refused with EPERM. */
  readonly readOnly: boolean;
  /** flush() makes earlier completed writes durable (false: flush is a no-op). */
  readonly canFlush: boolean;
  /** A write with `fua` is durable when it completes. */
  readonly canFua: boolean;
  /** discard() may free space (false: discard is accepted and ignored). */
  readonly canTrim: boolean;
  /** writeZeroes() is cheaper than writing a buffer of zeroes. */
  readonly canZero: boolean;
  /** writeZeroes({ fastZero: true }) succeeds only when it is fast, else fails with ENOTSUP. */
  readonly canFastZero: boolean;
  /** cache() prefetches rather than doing nothing. */
  readonly canCache: boolean;
  /** Several independent users see each other's completed writes (safe for NBD MULTI_CONN). */
  readonly canMultiConn: boolean;
  /** blockStatus() knows real allocation (false: it reports everything as data). */
  readonly canBlockStatus: boolean;
  /** Smallest I/O unit the device handles without read-modify-write, in bytes. */
  readonly minBlockSize: number;
  /** Size the device handles best, in bytes. */
  readonly preferredBlockSize: number;
  /** Largest single read/write the device accepts, in bytes. */
  readonly maxBlockSize: number;
}

export interface IoOptions {
  readonly signal?: AbortSignal;
}

export interface WriteOptions extends IoOptions {
  /** Force unit access: durable before the promise resolves. */
  readonly fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** The range may be deallocated (read back as zero) instead of written. */
  readonly mayTrim?: boolean;
  /** Fail with ENOTSUP rather than fall back to a slow write of zeroes. */
  readonly fastZero?: boolean;
}

/** One run of bytes with the same allocation state. `zero`: reads as zero; `hole`: not allocated. */
export interface Extent {
  readonly offset: number;
  readonly length: number;
  readonly hole: boolean;
  readonly zero: boolean;
}

export interface BlockDevice {
  /** Size in bytes; constant for the life of the object unless the device says otherwise. */
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  /** Fills `target` with the bytes at [offset, offset + target.length). */
  read(offset: number, target: Uint8Array, options?: IoOptions): Promise<void>;
  /**
   * Optional fast form of `read` for servers: returns undefined when the bytes were read at once
   * (from the page cache, without a promise or a thread hop), else the pending read. Throws
   * synchronously for bad arguments where `read` would reject.
   */
  readNow?(offset: number, target: Uint8Array, options?: IoOptions): Promise<void> | undefined;
  /** Writes `data` at offset; durable on return when `fua` is set. */
  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Makes [offset, offset+length) read as zeroes. */
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void>;
  /** Hints that the range is unused; afterwards its content is unspecified (reads may see old data or zero). */
  discard(offset: number, length: number, options?: WriteOptions): Promise<void>;
  /** Makes every completed write durable. */
  flush(options?: IoOptions): Promise<void>;
  /** Advises that the range will be read soon. */
  cache(offset: number, length: number, options?: IoOptions): Promise<void>;
  /**
   * Allocation of the range starting at `offset`: contiguous extents beginning exactly at
   * `offset`, at least one, never past offset+length (callers loop for the rest).
   */
  blockStatus(offset: number, length: number, options?: IoOptions): Promise<Extent[]>;
  /** Releases the device; later calls fail with ESHUTDOWN. Idempotent. */
  close(): Promise<void>;
}

/** Capabilities of a plain writable device; drivers spread this and override what differs. */
export const DEFAULT_CAPABILITIES: BlockCapabilities = {
  readOnly: false,
  canFlush: true,
  canFua: true,
  canTrim: true,
  canZero: true,
  canFastZero: true,
  canCache: false,
  canMultiConn: true,
  canBlockStatus: true,
  minBlockSize: 1,
  preferredBlockSize: 4096,
  maxBlockSize: 32 * 1024 * 1024,
};

/** Capabilities of a read-only view (a backup, a snapshot): nothing that writes is offered. */
export const READ_ONLY_CAPABILITIES: BlockCapabilities = {
  ...DEFAULT_CAPABILITIES,
  readOnly: true,
  canFlush: false,
  canFua: false,
  canTrim: false,
  canZero: false,
  canFastZero: false,
  canCache: false,
};
