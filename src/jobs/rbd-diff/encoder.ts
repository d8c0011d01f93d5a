// Serializers of `rbd diff v1` records. A write record is its 17-byte header followed by the
// data, so a caller streams a large extent without building one buffer for it.

import { BANNER, DiffError, MAX_SNAP_NAME, TAG_END, TAG_FROM_SNAP, TAG_SIZE, TAG_TO_SNAP, TAG_WRITE, TAG_ZERO, type DiffHeader } from './format.js';

function u64(buf: Buffer, value: number, at: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new DiffError('EDIFFFORMAT', `invalid 64-bit value ${value}`);
  buf.writeBigUInt64LE(BigInt(value), at);
}

function snapRecord(tag: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length > MAX_SNAP_NAME) throw new DiffError('EDIFFFORMAT', `snapshot name '${name.slice(0, 40)}…' is longer than ${MAX_SNAP_NAME} bytes`);
  const buf = Buffer.allocUnsafe(5 + bytes.length);
  buf[0] = tag;
  buf.writeUInt32LE(bytes.length, 1);
  bytes.copy(buf, 5);
  return buf;
}

/** Banner and metadata records. */
export function encodeHeader(header: DiffHeader): Buffer {
  const parts: Buffer[] = [BANNER];
  if (header.fromSnap !== undefined) parts.push(snapRecord(TAG_FROM_SNAP, header.fromSnap));
  if (header.toSnap !== undefined) parts.push(snapRecord(TAG_TO_SNAP, header.toSnap));
  const size = Buffer.allocUnsafe(9);
  size[0] = TAG_SIZE;
  u64(size, header.size, 1);
  parts.push(size);
  return Buffer.concat(parts);
}

function extentRecord(tag: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(17);
  buf[0] = tag;
  u64(buf, offset, 1);
  u64(buf, length, 9);
  return buf;
}

/** Header of a 'w' record; exactly `length` bytes of data must follow. */
export function encodeWriteHeader(offset: number, length: number): Buffer {
  return extentRecord(TAG_WRITE, offset, length);
}

/** A 'z' record: the range reads as zeroes. */
export function encodeZero(offset: number, length: number): Buffer {
  return extentRecord(TAG_ZERO, offset, length);
}

/** The final 'e' record. */
export function encodeEnd(): Buffer {
  return Buffer.from([TAG_END]);
}
