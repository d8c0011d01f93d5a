// A pool of chunk workers (one per core): the backup engine hands it batches of slots to hash,
// then asks the same worker to seal the slots the repository lacks. A batch stays pinned to the
// worker that holds its bytes between the two steps. Restore hands it spans of packs to open.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ID_LENGTH, type SealedBlob } from './blob-codec.js';
import { RepoError } from './errors.js';
import type { MasterKey } from './keys.js';
import type { SpanBlob, WorkerReply, WorkerRequest } from './chunk-worker.js';

export interface HashedBatch {
  readonly handle: { readonly worker: number; readonly batch: number };
  /** ids[i] is slot i's id, or undefined when the slot is all zero. */
  readonly ids: (Buffer | undefined)[];
}

interface Pending {
  resolve: (reply: WorkerReply) => void;
  reject: (err: unknown) => void;
}

export class ChunkPool {
  readonly #workers: Worker[] = [];
  // Per worker: outstanding requests by batch number, and how many there are (for balancing).
  readonly #pending: Map<number, Pending>[] = [];
  #nextBatch = 0;
  // Batch buffers the workers handed back, reused for the next reads (bounded).
  readonly #spare: ArrayBuffer[] = [];
  #failure: unknown;

  constructor(key: MasterKey | null, level: number, size = availableParallelism()) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = new Worker(new URL('./chunk-worker.js', import.meta.url), { workerData: { key, level } });
      const pending = new Map<number, Pending>();
      worker.on('message', (reply: WorkerReply) => {
        const waiter = pending.get(reply.batch);
        pending.delete(reply.batch);
        if (!waiter) return;
        if (reply.op === 'error') waiter.reject(new RepoError('EINVALID', `chunk worker failed: ${reply.message}`));
        else waiter.resolve(reply);
      });
      const fail = (err: unknown): void => {
        this.#failure ??= err;
        for (const waiter of pending.values()) waiter.reject(err);
        pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (code !== 0) fail(new RepoError('EINVALID', `chunk worker exited with status ${code}`));
      });
      this.#workers.push(worker);
      this.#pending.push(pending);
    }
  }

  #send(worker: number, msg: WorkerRequest, transfer: ArrayBuffer[]): Promise<WorkerReply> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#pending[worker]!.set(msg.batch, { resolve, reject });
      this.#workers[worker]!.postMessage(msg, transfer);
    });
  }

  #leastBusy(): number {
    let worker = 0;
    for (let i = 1; i < this.#workers.length; i++) if (this.#pending[i]!.size < this.#pending[worker]!.size) worker = i;
    return worker;
  }

  /** A buffer for a batch of `length` bytes: one a worker handed back, or a new one. */
  buffer(length: number): Buffer {
    const at = this.#spare.findIndex((b) => b.byteLength === length);
    return at >= 0 ? Buffer.from(this.#spare.splice(at, 1)[0]!) : Buffer.allocUnsafe(length);
  }

  /** Hashes the slots of `data` (ownership moves to the pool); the last slot may be short. */
  async hash(data: Buffer, chunkSize: number): Promise<HashedBatch> {
    const worker = this.#leastBusy();
    const batch = this.#nextBatch++;
    const buf = transferable(data);
    const reply = await this.#send(worker, { op: 'hash', batch, buf: buf as ArrayBuffer, chunkSize }, [buf as ArrayBuffer]);
    if (reply.op !== 'hashed') throw new RepoError('EINVALID', `unexpected chunk worker reply '${reply.op}'`);
    const ids = Buffer.from(reply.ids);
    return {
      handle: { worker, batch },
      ids: Array.from(reply.zero, (z, i) => (z ? undefined : ids.subarray(i * ID_LENGTH, (i + 1) * ID_LENGTH))),
    };
  }

  /** Compresses and seals the given slots of a hashed batch and releases the batch. */
  async seal(handle: HashedBatch['handle'], slots: readonly number[]): Promise<Map<number, SealedBlob>> {
    const reply = await this.#send(handle.worker, { op: 'seal', batch: handle.batch, slots }, []);
    if (reply.op !== 'sealed') throw new RepoError('EINVALID', `unexpected chunk worker reply '${reply.op}'`);
    if (reply.input && this.#spare.length < 8) this.#spare.push(reply.input);
    const data = Buffer.from(reply.data);
    return new Map(reply.blobs.map((b) => [b.slot, { stored: data.subarray(b.start, b.start + b.length), flags: b.flags, rawLength: b.rawLength, crc: b.crc }]));
  }

  /**
   * Opens (checks, decrypts, decompresses) the blobs of a span of stored bytes (ownership moves
   * to the pool). Entry i is blob i's plaintext, or an Error naming the failed check.
   */
  async open(data: Buffer, blobs: readonly SpanBlob[]): Promise<(Buffer | Error)[]> {
    const worker = this.#leastBusy();
    const buf = transferable(data);
    const reply = await this.#send(worker, { op: 'open', batch: this.#nextBatch++, buf, blobs }, [buf]);
    if (reply.op !== 'opened') throw new RepoError('EINVALID', `unexpected chunk worker reply '${reply.op}'`);
    return blobs.map((_, i) => {
      const plain = reply.plains[i];
      return plain ? Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength) : new RepoError('ECORRUPT', reply.errors[i] ?? 'blob could not be opened');
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** The bytes of a Buffer as an ArrayBuffer of their own (copied only when shared with others). */
function transferable(data: Buffer): ArrayBuffer {
  if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) return data.buffer as ArrayBuffer;
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}
