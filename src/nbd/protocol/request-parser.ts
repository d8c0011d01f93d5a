// Incremental parser of transmission-phase requests: feed it the connection's ByteQueue and
// pull complete requests. It validates the magic and caps WRITE payloads before allocating
// anything, so a bogus length costs nothing but a reply (or the connection).

import { NbdError } from '../errors.js';
import type { ByteQueue } from './byte-queue.js';
import { CMD_WRITE, NBD_EINVAL, REQUEST_HEADER_SIZE, REQUEST_MAGIC } from './constants.js';

export interface NbdRequest {
  readonly flags: number;
  readonly type: number;
  /** Opaque client value echoed in the reply. */
  readonly cookie: bigint;
  /** May exceed 2^53 on hostile input; such offsets are out of range anyway. */
  readonly offset: number;
  readonly length: number;
  /** The WRITE payload (exactly `length` bytes); undefined for other commands. */
  readonly data: Buffer | undefined;
  /** Non-zero: the request was refused while parsing; reply with this errno. */
  readonly rejected: number;
  /** The payload was too large even to skip: reply, then close the connection. */
  readonly disconnect: boolean;
}

export interface RequestParserOptions {
  /** Largest WRITE payload accepted, in bytes. */
  readonly maxPayload: number;
  /** Oversized payloads up to this many bytes are read and dropped; larger ones end the connection. */
  readonly maxSkip?: number;
}

export class RequestParser {
  readonly #queue: ByteQueue;
  readonly #maxPayload: number;
  readonly #maxSkip: number;
  readonly #header = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
  // A WRITE whose header is parsed and whose payload is still arriving.
  #pending: { flags: number; cookie: bigint; offset: number; length: number } | undefined;
  // Payload bytes of a refused WRITE still to drop.
  #skipping = 0;
  #failed = false;

  constructor(queue: ByteQueue, options: RequestParserOptions) {
    this.#queue = queue;
    this.#maxPayload = options.maxPayload;
    this.#maxSkip = options.maxSkip ?? 2 * options.maxPayload;
  }

  /** Next complete request, or undefined until more bytes arrive; throws NbdError on garbage. */
  next(): NbdRequest | undefined {
    if (this.#failed) throw new NbdError('ENBDPROTO', 'request stream already failed');
    const queue = this.#queue;
    if (this.#skipping > 0) {
      this.#skipping -= queue.skip(this.#skipping);
      if (this.#skipping > 0) return undefined;
    }
    const pending = this.#pending;
    if (pending) {
      if (queue.length < pending.length) return undefined;
      this.#pending = undefined;
      return { ...pending, type: CMD_WRITE, data: queue.take(pending.length), rejected: 0, disconnect: false };
    }
    if (queue.length < REQUEST_HEADER_SIZE) return undefined;
    const header = this.#header;
    queue.peek(header, REQUEST_HEADER_SIZE);
    const magic = header.readUInt32BE(0);
    if (magic !== REQUEST_MAGIC) {
      this.#failed = true;
      throw new NbdError('ENBDPROTO', `bad request magic 0x${magic.toString(16)}, expected 0x${REQUEST_MAGIC.toString(16)}`);
    }
    queue.skip(REQUEST_HEADER_SIZE);
    const flags = header.readUInt16BE(4);
    const type = header.readUInt16BE(6);
    const cookie = header.readBigUInt64BE(8);
    const offset = header.readUInt32BE(16) * 2 ** 32 + header.readUInt32BE(20);
    const length = header.readUInt32BE(24);
    if (type !== CMD_WRITE) return { flags, type, cookie, offset, length, data: undefined, rejected: 0, disconnect: false };
    if (length > this.#maxPayload) {
      const disconnect = length > this.#maxSkip;
      if (disconnect) this.#failed = true;
      else this.#skipping = length - queue.skip(length);
      return { flags, type, cookie, offset, length, data: undefined, rejected: NBD_EINVAL, disconnect };
    }
    if (queue.length >= length) return { flags, type, cookie, offset, length, data: queue.take(length), rejected: 0, disconnect: false };
    this.#pending = { flags, cookie, offset, length };
    return undefined;
  }
}
