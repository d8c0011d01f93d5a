// Serializer of transmission-phase requests as a client sends them: the 28-byte header (and
// the caller sends a WRITE's payload right after it).

import { REQUEST_HEADER_SIZE, REQUEST_MAGIC } from '../protocol/constants.js';
import { writeU64 } from '../protocol/replies.js';

/** A request header; `offset` must be a safe non-negative integer, `length` a u32. */
export function requestHeader(flags: number, type: number, cookie: bigint, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
  buf.writeUInt32BE(REQUEST_MAGIC, 0);
  buf.writeUInt16BE(flags, 4);
  buf.writeUInt16BE(type, 6);
  buf.writeBigUInt64BE(cookie, 8);
  writeU64(buf, offset, 16);
  buf.writeUInt32BE(length, 24);
  return buf;
}
