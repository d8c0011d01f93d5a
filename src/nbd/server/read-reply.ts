// Builds the reply to NBD_CMD_READ in one buffer: simple (header + data), one OFFSET_DATA chunk
// (DF, or a fully allocated range), or OFFSET_HOLE/OFFSET_DATA chunks following the device's
// allocation. The device reads straight into the payload parts of that buffer. Replies of 4 KiB
// and more reuse buffers: a fresh 1 MiB buffer costs 256 page faults when the kernel first copies
// into it (about half of a 1 MiB page-cache read), and allocating a fresh 4 KiB one (malloc, an
// ArrayBuffer, V8's external-memory bookkeeping) was a fifth of a cached 4 KiB read.

import type { BlockDevice, Extent, IoOptions } from '../../block/block-device.js';
import { REPLY_FLAG_DONE, SIMPLE_REPLY_HEADER_SIZE } from '../protocol/constants.js';
import {
  OFFSET_DATA_OVERHEAD,
  OFFSET_HOLE_SIZE,
  simpleReply,
  writeOffsetDataHeader,
  writeOffsetHole,
} from '../protocol/replies.js';

/**
 * Reads shorter than this are sent as one data chunk without asking the device for holes: the
 * allocation lookup (two lseeks on a raw file) costs more than the few zero bytes it saves.
 */
export const SPARSE_READ_MIN = 64 * 1024;

/** A successful simple read reply. */
export async function simpleRead(device: BlockDevice, cookie: bigint, offset: number, length: number, io: IoOptions): Promise<Buffer> {
  const buf = simpleReply(cookie, 0, length);
  if (length > 0) await device.read(offset, buf.subarray(SIMPLE_REPLY_HEADER_SIZE), io);
  return buf;
}

/** A successful structured read reply: one content chunk when `fragment` is false (DF). */
export async function structuredRead(
  device: BlockDevice,
  cookie: bigint,
  offset: number,
  length: number,
  fragment: boolean,
  io: IoOptions,
): Promise<Buffer> {
  const sparse = fragment && length >= SPARSE_READ_MIN && device.capabilities.canBlockStatus;
  const segments = sparse ? await segmentsOf(device, offset, length, io) : undefined;
  if (!segments || (segments.length === 1 && !segments[0]!.zero)) {
    const buf = takeReplyBuffer(OFFSET_DATA_OVERHEAD + length);
    writeOffsetDataHeader(buf, 0, REPLY_FLAG_DONE, cookie, offset, length);
    await device.read(offset, buf.subarray(OFFSET_DATA_OVERHEAD), io);
    return buf;
  }
  let total = 0;
  for (const s of segments) total += s.zero ? OFFSET_HOLE_SIZE : OFFSET_DATA_OVERHEAD + s.length;
  const buf = takeReplyBuffer(total);
  const reads: Promise<void>[] = [];
  let at = 0;
  segments.forEach((s, i) => {
    const flags = i === segments.length - 1 ? REPLY_FLAG_DONE : 0;
    if (s.zero) {
      writeOffsetHole(buf, at, flags, cookie, s.offset, s.length);
      at += OFFSET_HOLE_SIZE;
    } else {
      writeOffsetDataHeader(buf, at, flags, cookie, s.offset, s.length);
      const start = at + OFFSET_DATA_OVERHEAD;
      reads.push(device.read(s.offset, buf.subarray(start, start + s.length), io));
      at = start + s.length;
    }
  });
  await Promise.all(reads);
  return buf;
}

/** A read reply under construction: complete once `pending` settles, or now when it is undefined. */
export interface ReadNow {
  readonly reply: Buffer;
  readonly pending: Promise<void> | undefined;
}

/**
 * The reply to a read whose device can serve it at once (`readNow`: cached data, no promise),
 * or undefined when the read needs the general path (`simpleRead`/`structuredRead`): a device
 * without `readNow`, or a structured read long enough to be sent as holes and data. Throws what
 * the device throws for bad arguments.
 */
export function readReplyNow(device: BlockDevice, cookie: bigint, offset: number, length: number, structured: boolean, fragment: boolean, io: IoOptions): ReadNow | undefined {
  if (!device.readNow || length === 0) return undefined;
  if (structured && fragment && length >= SPARSE_READ_MIN && device.capabilities.canBlockStatus) return undefined;
  let reply: Buffer;
  let payload: number;
  if (structured) {
    reply = takeReplyBuffer(OFFSET_DATA_OVERHEAD + length);
    writeOffsetDataHeader(reply, 0, REPLY_FLAG_DONE, cookie, offset, length);
    payload = OFFSET_DATA_OVERHEAD;
  } else {
    reply = simpleReply(cookie, 0, length);
    payload = SIMPLE_REPLY_HEADER_SIZE;
  }
  return { reply, pending: device.readNow(offset, reply.subarray(payload), io) };
}

/** Replies this large or larger come from (and go back to) the pool; smaller ones use Node's slab. */
const POOL_MIN = 4096;
/** Pooled buffers kept per size class (powers of two). */
const POOL_PER_CLASS = 32;
const pool = new Map<number, ArrayBuffer[]>();
const pooled = new WeakSet<ArrayBuffer>();

/** A buffer of `size` bytes, from the pool when large (contents are garbage either way). */
function takeReplyBuffer(size: number): Buffer {
  if (size < POOL_MIN) return Buffer.allocUnsafe(size);
  const capacity = 2 ** Math.ceil(Math.log2(size));
  let memory = pool.get(capacity)?.pop();
  if (!memory) {
    memory = new ArrayBuffer(capacity);
    pooled.add(memory);
  }
  return Buffer.from(memory, 0, size);
}

/** Gives a read reply's memory back to the pool; only call once nothing uses `buf` any more. */
export function releaseReplyBuffer(buf: Buffer): void {
  const memory = buf.buffer;
  if (!(memory instanceof ArrayBuffer) || !pooled.has(memory)) return;
  let free = pool.get(memory.byteLength);
  if (!free) pool.set(memory.byteLength, (free = []));
  if (free.length < POOL_PER_CLASS && !free.includes(memory)) free.push(memory);
}

/** Runs of [offset, offset+length) that read as zero or not; uncovered tail counts as data. */
async function segmentsOf(device: BlockDevice, offset: number, length: number, io: IoOptions): Promise<Extent[]> {
  const end = offset + length;
  const out: Extent[] = [];
  let position = offset;
  while (position < end) {
    const extents = await device.blockStatus(position, end - position, io);
    const before = position;
    for (const e of extents) {
      const len = Math.min(e.length, end - position);
      if (len <= 0) break;
      const last = out[out.length - 1];
      if (last && last.zero === e.zero) out[out.length - 1] = { ...last, length: last.length + len };
      else out.push({ offset: position, length: len, hole: e.hole, zero: e.zero });
      position += len;
    }
    if (position === before) break;
  }
  if (position < end) out.push({ offset: position, length: end - position, hole: false, zero: false });
  return out;
}
