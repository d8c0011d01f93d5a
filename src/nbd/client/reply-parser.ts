// Incremental parser of transmission-phase replies (simple and structured) for a client: feed
// it the connection's ByteQueue, pull typed events. It asks the client what each cookie was
// sent for, so it can cap every payload length by what that request could legitimately get.
// Read payloads stream out as 'data' events, a piece per received chunk, so the client copies
// them straight into the caller's buffer: no payload is ever reassembled first.

import { NbdError } from '../errors.js';
import type { ByteQueue } from '../protocol/byte-queue.js';
import {
  CMD_BLOCK_STATUS,
  CMD_READ,
  MAX_STRING_LENGTH,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  SIMPLE_REPLY_HEADER_SIZE,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from '../protocol/constants.js';

/** What the client sent under a cookie: enough to bound the reply. */
export interface SentRequest {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
}

/**
 * 'simple' ends a request with no payload (an error, or a command that carries none); a simple
 * reply to a read comes as 'data' pieces instead. A 'data' piece is a view of the received bytes,
 * valid only until the next call: copy it out before then.
 */
export type ReplyEvent =
  | { readonly kind: 'simple'; readonly cookie: bigint; readonly error: number }
  | { readonly kind: 'data'; readonly cookie: bigint; readonly done: boolean; readonly offset: number; readonly data: Buffer }
  | { readonly kind: 'hole'; readonly cookie: bigint; readonly done: boolean; readonly offset: number; readonly length: number }
  | { readonly kind: 'status'; readonly cookie: bigint; readonly done: boolean; readonly contextId: number; readonly descriptors: Uint32Array }
  | { readonly kind: 'error'; readonly cookie: bigint; readonly done: boolean; readonly error: number; readonly message: string }
  | { readonly kind: 'none'; readonly cookie: bigint; readonly done: boolean };

/** Most descriptors accepted in one BLOCK_STATUS chunk (8 MiB of payload). */
export const MAX_STATUS_DESCRIPTORS = 1 << 20;
const MAX_OTHER_CHUNK = 64 * 1024;

export class ReplyParser {
  readonly #queue: ByteQueue;
  readonly #lookup: (cookie: bigint) => SentRequest | undefined;
  readonly #header = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_SIZE);
  // The read payload being streamed: where its next byte goes, bytes still to come, and whether
  // its last piece ends the request.
  #payload: { cookie: bigint; offset: number; left: number; done: boolean } | undefined;

  /** `lookup` returns the in-flight request for a cookie, undefined if none (a protocol error). */
  constructor(queue: ByteQueue, lookup: (cookie: bigint) => SentRequest | undefined) {
    this.#queue = queue;
    this.#lookup = lookup;
  }

  /** Next reply event, or undefined until more bytes arrive; throws NbdError on garbage. */
  next(): ReplyEvent | undefined {
    if (this.#payload) return this.#piece();
    const queue = this.#queue;
    if (queue.length < 4) return undefined;
    const header = this.#header;
    queue.peek(header, 4);
    const magic = header.readUInt32BE(0);
    if (magic === SIMPLE_REPLY_MAGIC) return this.#simple();
    if (magic === STRUCTURED_REPLY_MAGIC) return this.#structured();
    throw new NbdError('ENBDPROTO', `bad reply magic 0x${magic.toString(16)}`);
  }

  #request(cookie: bigint): SentRequest {
    const request = this.#lookup(cookie);
    if (!request) throw new NbdError('ENBDPROTO', `reply for unknown cookie ${cookie}`);
    return request;
  }

  #simple(): ReplyEvent | undefined {
    const queue = this.#queue;
    if (queue.length < SIMPLE_REPLY_HEADER_SIZE) return undefined;
    const header = this.#header;
    queue.peek(header, SIMPLE_REPLY_HEADER_SIZE);
    const error = header.readUInt32BE(4);
    const cookie = header.readBigUInt64BE(8);
    const request = this.#request(cookie);
    queue.skip(SIMPLE_REPLY_HEADER_SIZE);
    // A successful simple reply to READ carries exactly the requested bytes.
    const payload = error === 0 && request.type === CMD_READ ? request.length : 0;
    if (payload === 0) return { kind: 'simple', cookie, error };
    return this.#stream(cookie, request.offset, payload, true);
  }

  #stream(cookie: bigint, offset: number, left: number, done: boolean): ReplyEvent | undefined {
    this.#payload = { cookie, offset, left, done };
    return this.#piece();
  }

  /** The next piece of the payload being streamed: as much of it as the first chunk holds. */
  #piece(): ReplyEvent | undefined {
    const payload = this.#payload!;
    const data = this.#queue.takeView(payload.left);
    if (data.length === 0) return undefined;
    const offset = payload.offset;
    payload.offset += data.length;
    payload.left -= data.length;
    if (payload.left > 0) return { kind: 'data', cookie: payload.cookie, done: false, offset, data };
    this.#payload = undefined;
    return { kind: 'data', cookie: payload.cookie, done: payload.done, offset, data };
  }

  #structured(): ReplyEvent | undefined {
    const queue = this.#queue;
    if (queue.length < STRUCTURED_REPLY_HEADER_SIZE) return undefined;
    const header = this.#header;
    queue.peek(header, STRUCTURED_REPLY_HEADER_SIZE);
    const flags = header.readUInt16BE(4);
    const type = header.readUInt16BE(6);
    const cookie = header.readBigUInt64BE(8);
    const length = header.readUInt32BE(16);
    const request = this.#request(cookie);
    const cap = chunkCap(type, request);
    if (length > cap) throw new NbdError('ENBDPROTO', `reply chunk type ${type} for cookie ${cookie} has length ${length}, at most ${cap} allowed`);
    const done = (flags & REPLY_FLAG_DONE) !== 0;
    const tooShort = (min: number): void => {
      if (length < min) throw new NbdError('ENBDPROTO', `reply chunk type ${type} has length ${length}, needs at least ${min}`);
    };
    if (type === REPLY_TYPE_OFFSET_DATA) {
      tooShort(9);
      if (queue.length < STRUCTURED_REPLY_HEADER_SIZE + 8) return undefined;
      queue.skip(STRUCTURED_REPLY_HEADER_SIZE);
      return this.#stream(cookie, readU64(queue.take(8), 0), length - 8, done);
    }
    if (queue.length < STRUCTURED_REPLY_HEADER_SIZE + length) return undefined;
    queue.skip(STRUCTURED_REPLY_HEADER_SIZE);
    const body = queue.take(length);
    switch (type) {
      case REPLY_TYPE_NONE:
        return { kind: 'none', cookie, done };
      case REPLY_TYPE_OFFSET_HOLE:
        tooShort(12);
        return { kind: 'hole', cookie, done, offset: readU64(body, 0), length: body.readUInt32BE(8) };
      case REPLY_TYPE_BLOCK_STATUS: {
        tooShort(12);
        if ((length - 4) % 8 !== 0) throw new NbdError('ENBDPROTO', `block status chunk length ${length} is not 4 + 8n`);
        const descriptors = new Uint32Array((length - 4) / 4);
        for (let i = 0; i < descriptors.length; i++) descriptors[i] = body.readUInt32BE(4 + 4 * i);
        return { kind: 'status', cookie, done, contextId: body.readUInt32BE(0), descriptors };
      }
      default: {
        if (!(type & 0x8000)) return { kind: 'none', cookie, done }; // unknown informational chunk: ignored
        tooShort(6);
        const error = body.readUInt32BE(0);
        const messageLength = body.readUInt16BE(4);
        const extra = type === REPLY_TYPE_ERROR_OFFSET ? 8 : type === REPLY_TYPE_ERROR ? 0 : length - 6 - messageLength;
        if (6 + messageLength + extra !== length) throw new NbdError('ENBDPROTO', `error chunk message length ${messageLength} does not fit chunk length ${length}`);
        return { kind: 'error', cookie, done, error, message: body.toString('utf8', 6, 6 + messageLength) };
      }
    }
  }
}

/** Largest chunk payload a request can get: data up to its length, a few bytes for the rest. */
function chunkCap(type: number, request: SentRequest): number {
  switch (type) {
    case REPLY_TYPE_OFFSET_DATA:
      return request.type === CMD_READ ? 8 + request.length : 0;
    case REPLY_TYPE_OFFSET_HOLE:
      return request.type === CMD_READ ? 12 : 0;
    case REPLY_TYPE_BLOCK_STATUS:
      return request.type === CMD_BLOCK_STATUS ? 4 + 8 * MAX_STATUS_DESCRIPTORS : 0;
    default:
      return type & 0x8000 ? 6 + MAX_STRING_LENGTH + 8 : MAX_OTHER_CHUNK;
  }
}

function readU64(buf: Buffer, at: number): number {
  const high = buf.readUInt32BE(at);
  if (high >= 2 ** 21) throw new NbdError('ENBDPROTO', `offset 0x${buf.toString('hex', at, at + 8)} is beyond 2^53`);
  return high * 2 ** 32 + buf.readUInt32BE(at + 4);
}
