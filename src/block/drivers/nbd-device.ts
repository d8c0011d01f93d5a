// A BlockDevice over an NBD export (ours, qemu-nbd, nbdkit): capabilities come from the
// transmission flags, requests are pipelined on one connection, and other metadata contexts
// (e.g. qemu:dirty-bitmap:NAME) can be queried next to base:allocation.

import { AbortedError } from '../../core/errors.js';
import { NbdClient, type NbdClientOptions } from '../../nbd/client/nbd-client.js';
import type { NbdTarget } from '../../nbd/client/nbd-uri.js';
import {
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  FLAG_CAN_MULTI_CONN,
  FLAG_READ_ONLY,
  FLAG_SEND_CACHE,
  FLAG_SEND_FAST_ZERO,
  FLAG_SEND_FLUSH,
  FLAG_SEND_FUA,
  FLAG_SEND_TRIM,
  FLAG_SEND_WRITE_ZEROES,
  STATE_HOLE,
  STATE_ZERO,
} from '../../nbd/protocol/constants.js';
import type { BlockCapabilities, BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../block-device.js';
import { BlockError, checkRange } from '../errors.js';

/** One run of a metadata context; the meaning of `flags` belongs to the context. */
export interface ContextExtent {
  readonly offset: number;
  readonly length: number;
  readonly flags: number;
}

const BASE_ALLOCATION = 'base:allocation';
/** Longest range asked of BLOCK_STATUS / TRIM / WRITE_ZEROES in one request (a u32, kept aligned). */
const MAX_RANGE_REQUEST = 2 ** 31;

export class NbdDevice implements BlockDevice {
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  readonly #client: NbdClient;
  #closed = false;

  private constructor(client: NbdClient) {
    this.#client = client;
    const { info } = client;
    const f = (flag: number): boolean => (info.flags & flag) !== 0;
    this.size = info.size;
    this.capabilities = {
      readOnly: f(FLAG_READ_ONLY),
      canFlush: f(FLAG_SEND_FLUSH),
      canFua: f(FLAG_SEND_FUA),
      canTrim: f(FLAG_SEND_TRIM),
      canZero: f(FLAG_SEND_WRITE_ZEROES),
      canFastZero: f(FLAG_SEND_WRITE_ZEROES) && f(FLAG_SEND_FAST_ZERO),
      canCache: f(FLAG_SEND_CACHE),
      canMultiConn: f(FLAG_CAN_MULTI_CONN),
      canBlockStatus: info.contexts.has(BASE_ALLOCATION),
      minBlockSize: info.minBlockSize,
      preferredBlockSize: info.preferredBlockSize,
      maxBlockSize: info.maxPayload,
    };
  }

  /** Connects to `nbd://HOST:PORT/EXPORT` or `nbd+unix:///EXPORT?socket=PATH`; base:allocation is always asked for. */
  static async open(target: string | NbdTarget, options: NbdClientOptions = {}): Promise<NbdDevice> {
    const contexts = [BASE_ALLOCATION, ...(options.metaContexts ?? []).filter((c) => c !== BASE_ALLOCATION)];
    return new NbdDevice(await NbdClient.connect(target, { ...options, metaContexts: contexts }));
  }

  /** Names of the metadata contexts the server agreed to. */
  get contexts(): readonly string[] {
    return [...this.#client.info.contexts.keys()];
  }

  async read(offset: number, target: Uint8Array, options: IoOptions = {}): Promise<void> {
    this.#check(offset, target.length, 'read', options);
    await this.#split(offset, target.length, (at, n) =>
      this.#client.request(CMD_READ, 0, at, n, { target: target.subarray(at - offset, at - offset + n), signal: options.signal }),
    );
  }

  async write(offset: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    this.#check(offset, data.length, 'write', options, true);
    const flags = options.fua && this.capabilities.canFua ? CMD_FLAG_FUA : 0;
    await this.#split(offset, data.length, (at, n) =>
      this.#client.request(CMD_WRITE, flags, at, n, { data: data.subarray(at - offset, at - offset + n), signal: options.signal }),
    );
    if (options.fua && !this.capabilities.canFua) await this.flush(options);
  }

  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    this.#check(offset, length, 'write-zeroes', options, true);
    if (length === 0) return;
    if (!this.capabilities.canZero) {
      if (options.fastZero) throw new BlockError('ENOTSUP', 'write-zeroes: the nbd server cannot zero fast');
      const zeroes = new Uint8Array(Math.min(length, this.capabilities.maxBlockSize));
      for (let at = offset; at < offset + length; at += zeroes.length) {
        await this.write(at, zeroes.subarray(0, Math.min(zeroes.length, offset + length - at)), options);
      }
      return;
    }
    let flags = options.mayTrim ? 0 : CMD_FLAG_NO_HOLE;
    if (options.fua && this.capabilities.canFua) flags |= CMD_FLAG_FUA;
    if (options.fastZero) flags |= CMD_FLAG_FAST_ZERO;
    await this.#splitRange(offset, length, (at, n) => this.#client.request(CMD_WRITE_ZEROES, flags, at, n, { signal: options.signal }));
    if (options.fua && !this.capabilities.canFua) await this.flush(options);
  }

  async discard(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    this.#check(offset, length, 'discard', options, true);
    if (!this.capabilities.canTrim || length === 0) return;
    const flags = options.fua && this.capabilities.canFua ? CMD_FLAG_FUA : 0;
    await this.#splitRange(offset, length, (at, n) => this.#client.request(CMD_TRIM, flags, at, n, { signal: options.signal }));
  }

  async flush(options: IoOptions = {}): Promise<void> {
    this.#check(0, 0, 'flush', options);
    if (this.capabilities.canFlush) await this.#client.request(CMD_FLUSH, 0, 0, 0, { signal: options.signal });
  }

  async cache(offset: number, length: number, options: IoOptions = {}): Promise<void> {
    this.#check(offset, length, 'cache', options);
    if (!this.capabilities.canCache || length === 0) return;
    await this.#splitRange(offset, length, (at, n) => this.#client.request(CMD_CACHE, 0, at, n, { signal: options.signal }));
  }

  async blockStatus(offset: number, length: number, options: IoOptions = {}): Promise<Extent[]> {
    this.#check(offset, length, 'block-status', options);
    if (!this.capabilities.canBlockStatus || length === 0) return [{ offset, length, hole: false, zero: false }];
    const extents = await this.contextStatus(BASE_ALLOCATION, offset, length, options);
    return extents.map((e) => ({ offset: e.offset, length: e.length, hole: (e.flags & STATE_HOLE) !== 0, zero: (e.flags & STATE_ZERO) !== 0 }));
  }

  /**
   * Extents of a negotiated metadata context from `offset`: contiguous, at least one, never
   * past offset+length (callers loop for the rest). EINVAL if the context was not negotiated.
   */
  async contextStatus(name: string, offset: number, length: number, options: IoOptions = {}): Promise<ContextExtent[]> {
    this.#check(offset, length, 'block-status', options);
    const id = this.#client.info.contexts.get(name);
    if (id === undefined) throw new BlockError('EINVAL', `metadata context '${name}' was not negotiated (server offered: ${this.contexts.join(', ') || 'none'})`);
    if (length === 0) return [{ offset, length: 0, flags: 0 }];
    const asked = Math.min(length, MAX_RANGE_REQUEST);
    const reply = await this.#client.request(CMD_BLOCK_STATUS, 0, offset, asked, { signal: options.signal });
    const descriptors = reply.get(id);
    if (!descriptors || descriptors.length === 0) throw new BlockError('EIO', `block-status ${offset}+${asked}: no extents for context '${name}'`);
    const out: ContextExtent[] = [];
    let at = offset;
    const end = offset + length;
    for (let i = 0; i + 1 < descriptors.length && at < end; i += 2) {
      const n = Math.min(descriptors[i]!, end - at);
      if (n === 0) throw new BlockError('EIO', `block-status ${offset}+${asked}: zero-length extent for context '${name}'`);
      out.push({ offset: at, length: n, flags: descriptors[i + 1]! });
      at += n;
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.close();
  }

  #check(offset: number, length: number, what: string, options: IoOptions, writes = false): void {
    if (this.#closed) throw new BlockError('ESHUTDOWN', `${what}: nbd device is closed`);
    if (options.signal?.aborted) throw new AbortedError('operation aborted', { cause: options.signal.reason });
    checkRange(this.size, offset, length, what);
    if (writes && this.capabilities.readOnly) throw new BlockError('EPERM', `${what}: nbd export '${this.#client.info.exportName}' is read-only`);
  }

  /** Splits a data request into payloads the server accepts, all in flight together. */
  async #split(offset: number, length: number, send: (at: number, n: number) => Promise<unknown>): Promise<void> {
    const max = this.capabilities.maxBlockSize;
    const parts: Promise<unknown>[] = [];
    for (let at = offset; at < offset + length; at += max) parts.push(send(at, Math.min(max, offset + length - at)));
    await settleAll(parts);
  }

  async #splitRange(offset: number, length: number, send: (at: number, n: number) => Promise<unknown>): Promise<void> {
    const parts: Promise<unknown>[] = [];
    for (let at = offset; at < offset + length; at += MAX_RANGE_REQUEST) parts.push(send(at, Math.min(MAX_RANGE_REQUEST, offset + length - at)));
    await settleAll(parts);
  }
}

/** Waits for every part, then throws the first failure (no request is left running unobserved). */
async function settleAll(parts: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
