// Serializers of transmission-phase replies: simple replies and structured reply chunks. Read
// replies are allocated header + payload together so the device reads straight into the
// returned buffer's payload and the socket gets one buffer per chunk.

import {
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
} from './constants.js';

/** Bytes before the data in an OFFSET_DATA chunk (header + 64-bit offset). */
export const OFFSET_DATA_OVERHEAD = STRUCTURED_REPLY_HEADER_SIZE + 8;
/** Size of a whole OFFSET_HOLE chunk. */
export const OFFSET_HOLE_SIZE = STRUCTURED_REPLY_HEADER_SIZE + 12;

/** One block-status descriptor as sent on the wire. */
export interface StatusDescriptor {
  readonly length: number;
  readonly flags: number;
}

/** A simple reply with `payloadLength` bytes of room after the 16-byte header. */
export function simpleReply(cookie: bigint, error: number, payloadLength = 0): Buffer {
  const buf = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_SIZE + payloadLength);
  buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  buf.writeUInt32BE(error, 4);
  buf.writeBigUInt64BE(cookie, 8);
  return buf;
}

/** Writes a structured chunk header at `at`. */
export function writeChunkHeader(buf: Buffer, at: number, flags: number, type: number, cookie: bigint, length: number): void {
  buf.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  buf.writeBigUInt64BE(cookie, at + 8);
  buf.writeUInt32BE(length, at + 16);
}

/** Writes an OFFSET_DATA chunk header at `at`; the data goes at `at + OFFSET_DATA_OVERHEAD`. */
export function writeOffsetDataHeader(buf: Buffer, at: number, flags: number, cookie: bigint, offset: number, dataLength: number): void {
  writeChunkHeader(buf, at, flags, REPLY_TYPE_OFFSET_DATA, cookie, 8 + dataLength);
  writeU64(buf, offset, at + 20);
}

/** Writes a whole OFFSET_HOLE chunk at `at` (OFFSET_HOLE_SIZE bytes). */
export function writeOffsetHole(buf: Buffer, at: number, flags: number, cookie: bigint, offset: number, length: number): void {
  writeChunkHeader(buf, at, flags, REPLY_TYPE_OFFSET_HOLE, cookie, 12);
  writeU64(buf, offset, at + 20);
  buf.writeUInt32BE(length, at + 28);
}

/** The final NONE chunk of a successful structured reply. */
export function noneChunk(cookie: bigint): Buffer {
  const buf = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_SIZE);
  writeChunkHeader(buf, 0, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
  return buf;
}

/** A BLOCK_STATUS chunk for one metadata context. */
export function blockStatusChunk(cookie: bigint, flags: number, contextId: number, descriptors: readonly StatusDescriptor[]): Buffer {
  const payload = 4 + 8 * descriptors.length;
  const buf = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_SIZE + payload);
  writeChunkHeader(buf, 0, flags, REPLY_TYPE_BLOCK_STATUS, cookie, payload);
  buf.writeUInt32BE(contextId, 20);
  let at = 24;
  for (const d of descriptors) {
    buf.writeUInt32BE(d.length, at);
    buf.writeUInt32BE(d.flags, at + 4);
    at += 8;
  }
  return buf;
}

/** An ERROR chunk (final), or ERROR_OFFSET when `offset` is given (not final). */
export function errorChunk(cookie: bigint, error: number, message: string, offset?: number): Buffer {
  const text = Buffer.from(message.slice(0, MAX_STRING_LENGTH / 4), 'utf8');
  const payload = 6 + text.length + (offset === undefined ? 0 : 8);
  const buf = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_SIZE + payload);
  if (offset === undefined) writeChunkHeader(buf, 0, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, payload);
  else writeChunkHeader(buf, 0, 0, REPLY_TYPE_ERROR_OFFSET, cookie, payload);
  buf.writeUInt32BE(error, 20);
  buf.writeUInt16BE(text.length, 24);
  text.copy(buf, 26);
  if (offset !== undefined) {
    writeU64(buf, offset, 26 + text.length);
  }
  return buf;
}

/** Writes a non-negative safe integer as a big-endian 64-bit value. */
export function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / 2 ** 32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}
