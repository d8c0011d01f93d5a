// Worker thread of the chunk pool: hashes a batch of slots (and spots all-zero ones), keeps the
// batch until the main thread says which slots the repository lacks, then compresses and seals
// only those. Two steps so a mostly-unchanged disk costs hashing, not compression. For restore,
// it opens (checks, decrypts, decompresses) the blobs of a span of a pack.

import { parentPort, workerData } from 'node:worker_threads';
import { BlobCodec, BlobType, ID_LENGTH, isAllZero } from './blob-codec.js';
import type { MasterKey } from './keys.js';

export type WorkerRequest =
  | { readonly op: 'hash'; readonly batch: number; readonly buf: ArrayBuffer; readonly chunkSize: number }
  | { readonly op: 'seal'; readonly batch: number; readonly slots: readonly number[] }
  | { readonly op: 'open'; readonly batch: number; readonly buf: ArrayBuffer; readonly blobs: readonly SpanBlob[] };

/** A stored blob inside a span buffer; `at` is its offset in the buffer. */
export interface SpanBlob {
  readonly at: number;
  readonly id: Uint8Array;
  readonly type: number;
  readonly flags: number;
  readonly storedLength: number;
  readonly rawLength: number;
  readonly crc: number;
}

export interface SealedInfo {
  readonly slot: number;
  readonly start: number;
  readonly length: number;
  readonly flags: number;
  readonly rawLength: number;
  readonly crc: number;
}

export type WorkerReply =
  | { readonly op: 'hashed'; readonly batch: number; readonly ids: ArrayBuffer; readonly zero: Uint8Array }
  /** `input` is the batch's buffer handed back for reuse (no fresh allocation per batch). */
  | { readonly op: 'sealed'; readonly batch: number; readonly data: ArrayBuffer; readonly blobs: readonly SealedInfo[]; readonly input?: ArrayBuffer }
  /** `plains[i]` is blob i's plaintext, or undefined with `errors[i]` when it failed its checks. */
  | { readonly op: 'opened'; readonly batch: number; readonly plains: (Uint8Array | undefined)[]; readonly errors: (string | undefined)[]; readonly transfer?: ArrayBuffer[] }
  | { readonly op: 'error'; readonly batch: number; readonly message: string };

interface WorkerInit {
  readonly key: MasterKey | null;
  readonly level: number;
}

const init = workerData as WorkerInit;
const codec = new BlobCodec(init.key ? { dataKey: Buffer.from(init.key.dataKey), idKey: Buffer.from(init.key.idKey) } : null, init.level);
// Batches hashed but not yet sealed, by batch number.
const held = new Map<number, { buf: Buffer; chunkSize: number }>();

function slotBytes(buf: Buffer, chunkSize: number, slot: number): Buffer {
  return buf.subarray(slot * chunkSize, Math.min(buf.length, (slot + 1) * chunkSize));
}

function openSpan(msg: Extract<WorkerRequest, { op: 'open' }>): WorkerReply {
  const buf = Buffer.from(msg.buf);
  const plains: (Uint8Array | undefined)[] = [];
  const errors: (string | undefined)[] = [];
  const transfer = new Set<ArrayBuffer>([msg.buf]);
  msg.blobs.forEach((b, i) => {
    try {
      const stored = buf.subarray(b.at, b.at + b.storedLength);
      if (stored.length !== b.storedLength) throw new Error('short read');
      let plain: Uint8Array = codec.open({ ...b, id: Buffer.from(b.id.buffer, b.id.byteOffset, b.id.byteLength) }, stored, 'span');
      // Hand back views without copying: the span itself, or buffers of their own; anything
      // else (a slice of Node's shared pool, which must not be transferred) is copied out.
      if (plain.buffer !== msg.buf && plain.buffer.byteLength !== plain.byteLength) plain = new Uint8Array(plain);
      transfer.add(plain.buffer as ArrayBuffer);
      plains[i] = plain;
    } catch (err) {
      errors[i] = err instanceof Error ? err.message : String(err);
    }
  });
  return { op: 'opened', batch: msg.batch, plains, errors, transfer: [...transfer] };
}

/** The bytes of a Buffer as an ArrayBuffer that can be transferred (copied only if shared). */
function ownBuffer(data: Buffer): ArrayBuffer {
  if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.byteLength >= 4096) return data.buffer as ArrayBuffer;
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}

function handle(msg: WorkerRequest): WorkerReply {
  if (msg.op === 'open') return openSpan(msg);
  if (msg.op === 'hash') {
    const buf = Buffer.from(msg.buf);
    const count = Math.ceil(buf.length / msg.chunkSize);
    const ids = Buffer.alloc(count * ID_LENGTH);
    const zero = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const bytes = slotBytes(buf, msg.chunkSize, i);
      if (isAllZero(bytes)) zero[i] = 1;
      else codec.idOf(bytes).copy(ids, i * ID_LENGTH);
    }
    held.set(msg.batch, { buf, chunkSize: msg.chunkSize });
    return { op: 'hashed', batch: msg.batch, ids: ownBuffer(ids), zero };
  }
  const entry = held.get(msg.batch);
  held.delete(msg.batch);
  if (!entry) return { op: 'error', batch: msg.batch, message: `unknown batch ${msg.batch}` };
  const parts: Buffer[] = [];
  const blobs: SealedInfo[] = [];
  let start = 0;
  for (const slot of msg.slots) {
    const bytes = slotBytes(entry.buf, entry.chunkSize, slot);
    const sealed = codec.seal(BlobType.chunk, codec.idOf(bytes), bytes);
    parts.push(sealed.stored);
    blobs.push({ slot, start, length: sealed.stored.length, flags: sealed.flags, rawLength: sealed.rawLength, crc: sealed.crc });
    start += sealed.stored.length;
  }
  const data = Buffer.concat(parts, start);
  const whole = entry.buf.byteOffset === 0 && entry.buf.byteLength === entry.buf.buffer.byteLength;
  return { op: 'sealed', batch: msg.batch, data: ownBuffer(data), blobs, input: whole ? (entry.buf.buffer as ArrayBuffer) : undefined };
}

parentPort!.on('message', (msg: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = handle(msg);
  } catch (err) {
    reply = { op: 'error', batch: msg.batch, message: err instanceof Error ? err.message : String(err) };
  }
  let transfer: ArrayBuffer[] = [];
  if (reply.op === 'hashed') transfer = [reply.ids];
  else if (reply.op === 'sealed') transfer = reply.input ? [reply.data, reply.input] : [reply.data];
  else if (reply.op === 'opened') {
    transfer = reply.transfer ?? [];
    reply = { ...reply, transfer: undefined };
  }
  parentPort!.postMessage(reply, transfer);
});
