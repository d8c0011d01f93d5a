// One export of a server: a name, a BlockDevice, and what the protocol announces about it
// (transmission flags, block sizes, metadata contexts), all derived from device.capabilities.

import type { BlockDevice } from '../../block/block-device.js';
import { isPowerOfTwo } from '../../core/size.js';
import { NbdError } from '../errors.js';
import {
  DEFAULT_MAX_PAYLOAD,
  FLAG_CAN_MULTI_CONN,
  FLAG_HAS_FLAGS,
  FLAG_READ_ONLY,
  FLAG_SEND_CACHE,
  FLAG_SEND_DF,
  FLAG_SEND_FAST_ZERO,
  FLAG_SEND_FLUSH,
  FLAG_SEND_FUA,
  FLAG_SEND_TRIM,
  FLAG_SEND_WRITE_ZEROES,
  MAX_STRING_LENGTH,
} from '../protocol/constants.js';
import { BASE_ALLOCATION, baseAllocation, type MetaContextProvider } from './meta-context.js';

export interface NbdExportOptions {
  readonly name: string;
  readonly device: BlockDevice;
  /** Shown by `nbdinfo --list` and `qemu-nbd -L`. */
  readonly description?: string;
  /** Refuse writes even if the device accepts them. */
  readonly readOnly?: boolean;
  /**
   * Extra metadata contexts; `base:allocation` is always offered unless one is given here. A
   * function is asked again on every LIST/SET_META_CONTEXT, for contexts that come and go (a
   * disk's bitmaps); a connection keeps the contexts it selected.
   */
  readonly metaContexts?: readonly MetaContextProvider[] | (() => readonly MetaContextProvider[]);
}

export class NbdExport {
  readonly name: string;
  readonly device: BlockDevice;
  readonly description: string;
  readonly readOnly: boolean;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  /** Largest READ/WRITE payload accepted, in bytes. */
  readonly maxPayload: number;
  readonly #base: MetaContextProvider;
  // The fixed list, or the function that makes the current one.
  readonly #contexts: readonly MetaContextProvider[] | (() => readonly MetaContextProvider[]);

  constructor(options: NbdExportOptions) {
    if (Buffer.byteLength(options.name) > MAX_STRING_LENGTH) {
      throw new NbdError('ENBDEXPORT', `export name '${options.name.slice(0, 40)}…' is longer than ${MAX_STRING_LENGTH} bytes`);
    }
    const caps = options.device.capabilities;
    this.name = options.name;
    this.device = options.device;
    this.description = options.description ?? '';
    this.readOnly = (options.readOnly ?? false) || caps.readOnly;
    this.#base = baseAllocation(options.device);
    const extra = options.metaContexts ?? [];
    this.#contexts = typeof extra === 'function' ? extra : this.#withBase(extra);
    // The spec bounds: minimum a power of two <= 64 KiB; preferred >= max(minimum, 512).
    this.minBlockSize = isPowerOfTwo(caps.minBlockSize) ? Math.min(caps.minBlockSize, 65536) : 1;
    const preferred = isPowerOfTwo(caps.preferredBlockSize) ? caps.preferredBlockSize : 4096;
    this.preferredBlockSize = Math.max(preferred, this.minBlockSize, 512);
    this.maxPayload = Math.max(Math.min(caps.maxBlockSize, DEFAULT_MAX_PAYLOAD), this.preferredBlockSize);
  }

  /** The metadata contexts offered now, `base:allocation` included; ids follow this order. */
  get metaContexts(): readonly MetaContextProvider[] {
    const contexts = this.#contexts;
    return typeof contexts === 'function' ? this.#withBase(contexts()) : contexts;
  }

  /** Transmission flags for a client; DF only exists once structured replies are negotiated. */
  transmissionFlags(structured: boolean): number {
    const caps = this.device.capabilities;
    let flags = FLAG_HAS_FLAGS;
    if (caps.canFlush) flags |= FLAG_SEND_FLUSH;
    if (caps.canCache) flags |= FLAG_SEND_CACHE;
    if (caps.canMultiConn) flags |= FLAG_CAN_MULTI_CONN;
    if (structured) flags |= FLAG_SEND_DF;
    if (this.readOnly) return flags | FLAG_READ_ONLY;
    if (caps.canFua) flags |= FLAG_SEND_FUA;
    if (caps.canTrim) flags |= FLAG_SEND_TRIM;
    if (caps.canZero) flags |= FLAG_SEND_WRITE_ZEROES;
    if (caps.canZero && caps.canFastZero) flags |= FLAG_SEND_FAST_ZERO;
    return flags;
  }

  #withBase(extra: readonly MetaContextProvider[]): readonly MetaContextProvider[] {
    return extra.some((p) => p.name === BASE_ALLOCATION) ? [...extra] : [this.#base, ...extra];
  }
}
