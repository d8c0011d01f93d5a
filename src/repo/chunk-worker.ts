// Worker thread of the chunk pool: hashes a batch of slots (and spots all-zero ones), keeps the
// batch until the main thread says which slots the repository lacks, then compresses and seals
// only those. Two steps so a mostly-unchanged disk costs hashing, not compression.

import { parentPort, workerData } from 'node:worker_threads';
import { BlobCodec, BlobType, ID_LENGTH, isAllZero } from './blob-codec.js';
import type { MasterKey } from './keys.js';

export type WorkerRequest =
  | { readonly op: 'hash'; readonly batch: number; readonly buf: ArrayBuffer; readonly chunkSize: number }
  | { readonly op: 'seal'; readonly batch: number; readonly slots: readonly number[] };

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
  | { readonly op: 'sealed'; readonly batch: number; readonly data: ArrayBuffer; readonly blobs: readonly SealedInfo[] }
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

function handle(msg: WorkerRequest): WorkerReply {
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
    return { op: 'hashed', batch: msg.batch, ids: ids.buffer.slice(ids.byteOffset, ids.byteOffset + ids.length), zero };
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
  return { op: 'sealed', batch: msg.batch, data: data.buffer.slice(data.byteOffset, data.byteOffset + data.length), blobs };
}

parentPort!.on('message', (msg: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = handle(msg);
  } catch (err) {
    reply = { op: 'error', batch: msg.batch, message: err instanceof Error ? err.message : String(err) };
  }
  const transfer = reply.op === 'hashed' ? [reply.ids] : reply.op === 'sealed' ? [reply.data] : [];
  parentPort!.postMessage(reply, transfer);
});
