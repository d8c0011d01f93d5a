// Codec of the fixed-newstyle handshake: the server greeting, the client flags, option frames
// and their payloads (GO/INFO, meta-context queries), and every option reply the server sends.

import { NbdError } from '../errors.js';
import type { ByteQueue } from './byte-queue.js';
import {
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  MAX_STRING_LENGTH,
  NBDMAGIC,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  REP_INFO,
  REP_META_CONTEXT,
  REP_SERVER,
} from './constants.js';

export type HandshakeEvent =
  | { readonly kind: 'client-flags'; readonly flags: number }
  | { readonly kind: 'option'; readonly option: number; readonly data: Buffer }
  /** The option's data was longer than the cap and was dropped unread. */
  | { readonly kind: 'oversized'; readonly option: number; readonly length: number };

/** Largest option payload parsed; larger ones are skipped up to MAX_OPTION_SKIP, else fatal. */
export const MAX_OPTION_LENGTH = 64 * 1024;
const MAX_OPTION_SKIP = 16 * 1024 * 1024;

/** The 18 bytes the server sends first. */
export function serverGreeting(): Buffer {
  const buf = Buffer.allocUnsafe(18);
  buf.writeBigUInt64BE(NBDMAGIC, 0);
  buf.writeBigUInt64BE(IHAVEOPT, 8);
  buf.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return buf;
}

/** Parses what a client sends during the handshake: its flags, then option frames. */
export class HandshakeParser {
  readonly #queue: ByteQueue;
  readonly #header = Buffer.allocUnsafe(OPTION_HEADER_SIZE);
  #gotFlags = false;
  #skipping = 0;

  constructor(queue: ByteQueue) {
    this.#queue = queue;
  }

  /** Next event, or undefined until more bytes arrive; throws NbdError on garbage. */
  next(): HandshakeEvent | undefined {
    const queue = this.#queue;
    if (this.#skipping > 0) {
      this.#skipping -= queue.skip(this.#skipping);
      if (this.#skipping > 0) return undefined;
    }
    if (!this.#gotFlags) {
      if (queue.length < 4) return undefined;
      this.#gotFlags = true;
      return { kind: 'client-flags', flags: queue.take(4).readUInt32BE(0) };
    }
    if (queue.length < OPTION_HEADER_SIZE) return undefined;
    const header = this.#header;
    queue.peek(header, OPTION_HEADER_SIZE);
    const magic = header.readBigUInt64BE(0);
    if (magic !== IHAVEOPT) throw new NbdError('ENBDPROTO', `bad option magic 0x${magic.toString(16)}, expected IHAVEOPT`);
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > MAX_OPTION_LENGTH) {
      if (length > MAX_OPTION_SKIP) throw new NbdError('ENBDPROTO', `option ${option} length ${length} exceeds ${MAX_OPTION_SKIP}`);
      queue.skip(OPTION_HEADER_SIZE);
      this.#skipping = length - queue.skip(length);
      return { kind: 'oversized', option, length };
    }
    if (queue.length < OPTION_HEADER_SIZE + length) return undefined;
    queue.skip(OPTION_HEADER_SIZE);
    return { kind: 'option', option, data: Buffer.from(queue.take(length)) };
  }
}

/** Reads length-prefixed fields of an option payload; every read is bounds-checked. */
class FieldReader {
  #at = 0;
  constructor(readonly data: Buffer) {}

  get remaining(): number {
    return this.data.length - this.#at;
  }

  u16(): number | undefined {
    if (this.remaining < 2) return undefined;
    this.#at += 2;
    return this.data.readUInt16BE(this.#at - 2);
  }

  u32(): number | undefined {
    if (this.remaining < 4) return undefined;
    this.#at += 4;
    return this.data.readUInt32BE(this.#at - 4);
  }

  /** A 32-bit length then that many bytes of UTF-8, at most MAX_STRING_LENGTH. */
  string(): string | undefined {
    const length = this.u32();
    if (length === undefined || length > MAX_STRING_LENGTH || length > this.remaining) return undefined;
    this.#at += length;
    return this.data.toString('utf8', this.#at - length, this.#at);
  }
}

export interface InfoRequest {
  readonly name: string;
  readonly infos: readonly number[];
}

/** Parses NBD_OPT_INFO / NBD_OPT_GO data; undefined when malformed (reply ERR_INVALID). */
export function parseInfoRequest(data: Buffer): InfoRequest | undefined {
  const reader = new FieldReader(data);
  const name = reader.string();
  const count = reader.u16();
  if (name === undefined || count === undefined || reader.remaining !== 2 * count) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(reader.u16()!);
  return { name, infos };
}

export interface MetaContextRequest {
  readonly name: string;
  readonly queries: readonly string[];
}

/** Parses NBD_OPT_LIST/SET_META_CONTEXT data; undefined when malformed (reply ERR_INVALID). */
export function parseMetaContextRequest(data: Buffer): MetaContextRequest | undefined {
  const reader = new FieldReader(data);
  const name = reader.string();
  const count = reader.u32();
  if (name === undefined || count === undefined || count > reader.remaining / 4) return undefined;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const query = reader.string();
    if (query === undefined) return undefined;
    queries.push(query);
  }
  return reader.remaining === 0 ? { name, queries } : undefined;
}

/** An option reply frame with an optional payload. */
export function optionReply(option: number, type: number, payload?: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : (payload ?? Buffer.alloc(0));
  const buf = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE + body.length);
  buf.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(type >>> 0, 12);
  buf.writeUInt32BE(body.length, 16);
  body.copy(buf, OPTION_REPLY_HEADER_SIZE);
  return buf;
}

/** NBD_REP_SERVER: an export name, then its description for people. */
export function serverReply(option: number, name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const payload = Buffer.concat([Buffer.alloc(4), nameBytes, Buffer.from(description, 'utf8')]);
  payload.writeUInt32BE(nameBytes.length, 0);
  return optionReply(option, REP_SERVER, payload);
}

/** NBD_REP_INFO with NBD_INFO_EXPORT: size and transmission flags. */
export function infoExportReply(option: number, size: number, transmissionFlags: number): Buffer {
  const payload = Buffer.allocUnsafe(12);
  payload.writeUInt16BE(INFO_EXPORT, 0);
  payload.writeBigUInt64BE(BigInt(size), 2);
  payload.writeUInt16BE(transmissionFlags, 10);
  return optionReply(option, REP_INFO, payload);
}

/** NBD_REP_INFO with NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
export function infoStringReply(option: number, info: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const payload = Buffer.allocUnsafe(2 + bytes.length);
  payload.writeUInt16BE(info, 0);
  bytes.copy(payload, 2);
  return optionReply(option, REP_INFO, payload);
}

/** NBD_REP_INFO with NBD_INFO_BLOCK_SIZE. */
export function infoBlockSizeReply(option: number, minimum: number, preferred: number, maximum: number): Buffer {
  const payload = Buffer.allocUnsafe(14);
  payload.writeUInt16BE(INFO_BLOCK_SIZE, 0);
  payload.writeUInt32BE(minimum, 2);
  payload.writeUInt32BE(preferred, 6);
  payload.writeUInt32BE(maximum, 10);
  return optionReply(option, REP_INFO, payload);
}

/** NBD_REP_META_CONTEXT: a context id and its name. */
export function metaContextReply(option: number, id: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const payload = Buffer.allocUnsafe(4 + bytes.length);
  payload.writeUInt32BE(id, 0);
  bytes.copy(payload, 4);
  return optionReply(option, REP_META_CONTEXT, payload);
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 zero bytes. */
export function exportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(10 + (noZeroes ? 0 : 124));
  buf.writeBigUInt64BE(BigInt(size), 0);
  buf.writeUInt16BE(transmissionFlags, 8);
  return buf;
}
