// Worker thread of the chunk pool: hashes a batch of slots (and spots all-zero ones), keeps the
// batch until the main thread says which slots the repository lacks, then seals only those,
// straight into the pack it is building. Two steps so a mostly-unchanged disk costs hashing,
// not compression. For restore, it opens (checks, decrypts, decompresses) a span of a pack.

import { parentPort, workerData } from 'node:worker_threads';
import { BlobCodec, BlobType, ID_LENGTH, isAllZero } from './blob-codec.js';
import type { MasterKey } from './keys.js';
import { PackAssembler, type AssembledPack } from './pack-assembler.js';

export type WorkerRequest =
  | { readonly op: 'hash'; readonly batch: number; readonly buf: ArrayBuffer; readonly chunkSize: number }
  | { readonly op: 'seal'; readonly batch: number; readonly slots: readonly number[] }
  | { readonly op: 'blob'; readonly batch: number; readonly id: Uint8Array; readonly type: number; readonly plain: Uint8Array }
  | { readonly op: 'flush'; readonly batch: number }
  | { readonly op: 'recycle'; readonly batch: number; readonly buf: ArrayBuffer }
  /** `out` (optional) is a buffer to reuse for the plaintexts. */
  | { readonly op: 'open'; readonly batch: number; readonly buf: ArrayBuffer; readonly blobs: readonly SpanBlob[]; readonly out?: ArrayBuffer };

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

/** Where blob i's plaintext is: in the span itself (kept raw) or in the output buffer. */
export interface OpenedBlob {
  readonly inOut: boolean;
  readonly at: number;
  readonly length: number;
}

export type WorkerReply =
  | { readonly op: 'hashed'; readonly batch: number; readonly ids: ArrayBuffer; readonly zero: Uint8Array }
  /** `input` is the batch's buffer handed back for reuse (no fresh allocation per batch). */
  | { readonly op: 'sealed'; readonly batch: number; readonly storedBytes: number; readonly input?: ArrayBuffer }
  | { readonly op: 'stored'; readonly batch: number; readonly storedBytes: number }
  | { readonly op: 'flushed'; readonly batch: number }
  /** A finished pack, sent unasked (batch -1) before the reply of the request that filled it. */
  | { readonly op: 'pack'; readonly batch: number; readonly pack: AssembledPack }
  /** `blobs[i]` locates blob i's plaintext, or is undefined with `errors[i]` when it failed its checks. */
  | { readonly op: 'opened'; readonly batch: number; readonly span: ArrayBuffer; readonly out: ArrayBuffer; readonly blobs: (OpenedBlob | undefined)[]; readonly errors: (string | undefined)[] }
  | { readonly op: 'error'; readonly batch: number; readonly message: string };

interface WorkerInit {
  readonly key: MasterKey | null;
  readonly level: number;
  readonly packSize: number;
}

const init = workerData as WorkerInit;
const codec = new BlobCodec(init.key ? { dataKey: Buffer.from(init.key.dataKey), idKey: Buffer.from(init.key.idKey) } : null, init.level);
const packs = new PackAssembler(codec, init.packSize);
// Batches hashed but not yet sealed, by batch number, with their slot ids.
const held = new Map<number, { buf: Buffer; chunkSize: number; ids: Buffer }>();

function slotBytes(buf: Buffer, chunkSize: number, slot: number): Buffer {
  return buf.subarray(slot * chunkSize, Math.min(buf.length, (slot + 1) * chunkSize));
}

function send(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(reply, transfer);
}

/** Sends finished packs ahead of the reply, so the main thread starts their uploads first. */
function sendPacks(finished: AssembledPack[]): void {
  for (const pack of finished) send({ op: 'pack', batch: -1, pack }, [pack.buf]);
}

function openSpan(msg: Extract<WorkerRequest, { op: 'open' }>): void {
  const span = Buffer.from(msg.buf);
  const need = msg.blobs.reduce((sum, b) => sum + (b.flags ? b.rawLength : 0), 0);
  const out = Buffer.from(msg.out && msg.out.byteLength >= need ? msg.out : new ArrayBuffer(Math.max(need, 1)));
  const blobs: (OpenedBlob | undefined)[] = [];
  const errors: (string | undefined)[] = [];
  let used = 0;
  msg.blobs.forEach((b, i) => {
    try {
      const stored = span.subarray(b.at, b.at + b.storedLength);
      if (stored.length !== b.storedLength) throw new Error('short read');
      const ref = { ...b, id: Buffer.from(b.id.buffer, b.id.byteOffset, b.id.byteLength) };
      let plain = codec.openInto(ref, stored, 'span', out, used);
      if (plain.buffer !== out.buffer && plain.buffer !== span.buffer) plain = out.subarray(used, used + plain.copy(out, used)); // decrypted raw
      const inOut = plain.buffer === out.buffer;
      blobs[i] = { inOut, at: plain.byteOffset - (inOut ? out.byteOffset : span.byteOffset), length: plain.length };
      if (inOut) used += plain.length;
    } catch (err) {
      errors[i] = err instanceof Error ? err.message : String(err);
    }
  });
  send({ op: 'opened', batch: msg.batch, span: msg.buf, out: out.buffer as ArrayBuffer, blobs, errors }, [msg.buf, out.buffer as ArrayBuffer]);
}

function handle(msg: WorkerRequest): void {
  switch (msg.op) {
    case 'open':
      return openSpan(msg);
    case 'hash': {
      const buf = Buffer.from(msg.buf);
      const count = Math.ceil(buf.length / msg.chunkSize);
      const ids = Buffer.from(new ArrayBuffer(count * ID_LENGTH));
      const zero = new Uint8Array(count);
      for (let i = 0; i < count; i++) {
        const bytes = slotBytes(buf, msg.chunkSize, i);
        if (isAllZero(bytes)) zero[i] = 1;
        else codec.idOf(bytes).copy(ids, i * ID_LENGTH);
      }
      held.set(msg.batch, { buf, chunkSize: msg.chunkSize, ids: Buffer.from(ids) });
      return send({ op: 'hashed', batch: msg.batch, ids: ids.buffer as ArrayBuffer, zero }, [ids.buffer as ArrayBuffer]);
    }
    case 'seal': {
      const entry = held.get(msg.batch);
      held.delete(msg.batch);
      if (!entry) return send({ op: 'error', batch: msg.batch, message: `unknown batch ${msg.batch}` });
      const finished: AssembledPack[] = [];
      let storedBytes = 0;
      for (const slot of msg.slots) {
        const id = entry.ids.subarray(slot * ID_LENGTH, (slot + 1) * ID_LENGTH);
        storedBytes += packs.add(id, BlobType.chunk, slotBytes(entry.buf, entry.chunkSize, slot), finished);
      }
      sendPacks(finished);
      const whole = entry.buf.byteOffset === 0 && entry.buf.byteLength === entry.buf.buffer.byteLength;
      const input = whole ? (entry.buf.buffer as ArrayBuffer) : undefined;
      return send({ op: 'sealed', batch: msg.batch, storedBytes, input }, input ? [input] : []);
    }
    case 'blob': {
      const finished: AssembledPack[] = [];
      const storedBytes = packs.add(Buffer.from(msg.id), msg.type, msg.plain, finished);
      sendPacks(finished);
      return send({ op: 'stored', batch: msg.batch, storedBytes });
    }
    case 'flush': {
      const pack = packs.finish();
      sendPacks(pack ? [pack] : []);
      return send({ op: 'flushed', batch: msg.batch });
    }
    case 'recycle':
      return packs.recycle(msg.buf);
    default:
      return msg satisfies never;
  }
}

parentPort!.on('message', (msg: WorkerRequest) => {
  try {
    handle(msg);
  } catch (err) {
    send({ op: 'error', batch: msg.batch, message: err instanceof Error ? err.message : String(err) });
  }
});
