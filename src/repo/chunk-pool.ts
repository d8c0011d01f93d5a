// A pool of chunk workers (one per core): the backup engine hands it batches of slots to hash,
// then asks the same worker to seal the slots the repository lacks into the pack that worker
// is building; finished packs come back through `onPack`, ready to upload. A batch stays pinned
// to the worker that holds its bytes between the two steps. Restore hands it spans to open and
// write into the image.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ID_LENGTH } from './blob-codec.js';
import { RepoError } from './errors.js';
import type { MasterKey } from './keys.js';
import type { AssembledPack } from './pack-assembler.js';
import type { SpanBlob, WorkerReply, WorkerRequest } from './chunk-worker.js';

export interface HashedBatch {
  readonly handle: { readonly worker: number; readonly batch: number };
  /** ids[i] is slot i's id, or undefined when the slot is all zero. */
  readonly ids: (Buffer | undefined)[];
}

export interface ChunkPoolOptions {
  /** Target pack size for packs the workers build (backup only). */
  readonly packSize?: number;
  /** Receives every pack a worker finished; hand its buffer back with recycle() once stored. */
  readonly onPack?: (pack: AssembledPack, worker: number) => void;
}

/** What openToFile did: per blob an Error (that blob was not written) or undefined. */
export interface WrittenSpan {
  readonly errors: (Error | undefined)[];
  /** Bytes written to the file. */
  readonly written: number;
}

interface Pending {
  resolve: (reply: WorkerReply) => void;
  reject: (err: unknown) => void;
}

/** Span buffers kept for reuse by spanBuffer(). */
const MAX_SPARE_SPANS = 8;

export class ChunkPool {
  readonly #workers: Worker[] = [];
  // Per worker: outstanding requests by batch number, and how many there are (for balancing).
  readonly #pending: Map<number, Pending>[] = [];
  #nextBatch = 0;
  // Batch buffers the workers handed back, reused for the next reads (bounded).
  readonly #spare: ArrayBuffer[] = [];
  readonly #spareSpans: ArrayBuffer[] = [];
  #failure: unknown;

  constructor(key: MasterKey | null, level: number, size = availableParallelism(), options: ChunkPoolOptions = {}) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = new Worker(new URL('./chunk-worker.js', import.meta.url), { workerData: { key, level, packSize: options.packSize ?? 0 } });
      const pending = new Map<number, Pending>();
      worker.on('message', (reply: WorkerReply) => {
        if (reply.op === 'pack') {
          options.onPack?.(reply.pack, i);
          return;
        }
        const waiter = pending.get(reply.batch);
        pending.delete(reply.batch);
        if (reply.op === 'error') {
          const err = new RepoError('EINVALID', `chunk worker failed: ${reply.message}`);
          if (waiter) waiter.reject(err);
          else this.#failure ??= err;
        } else waiter?.resolve(reply);
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

  async #call<Op extends WorkerReply['op']>(worker: number, msg: WorkerRequest, transfer: ArrayBuffer[], op: Op): Promise<Extract<WorkerReply, { op: Op }>> {
    const reply = await this.#send(worker, msg, transfer);
    if (reply.op !== op) throw new RepoError('EINVALID', `unexpected chunk worker reply '${reply.op}'`);
    return reply as Extract<WorkerReply, { op: Op }>;
  }

  #leastBusy(): number {
    let worker = 0;
    for (let i = 1; i < this.#workers.length; i++) if (this.#pending[i]!.size < this.#pending[worker]!.size) worker = i;
    return worker;
  }

  /** A buffer for a batch of `length` bytes: one a worker handed back, or a new one. */
  buffer(length: number): Buffer {
    const at = this.#spare.findIndex((b) => b.byteLength === length);
    return at >= 0 ? Buffer.from(this.#spare.splice(at, 1)[0]!) : Buffer.from(new ArrayBuffer(length));
  }

  /** Hashes the slots of `data` (ownership moves to the pool); the last slot may be short. */
  async hash(data: Buffer, chunkSize: number): Promise<HashedBatch> {
    const worker = this.#leastBusy();
    const batch = this.#nextBatch++;
    const buf = transferable(data);
    const reply = await this.#call(worker, { op: 'hash', batch, buf, chunkSize }, [buf], 'hashed');
    const ids = Buffer.from(reply.ids);
    return {
      handle: { worker, batch },
      ids: Array.from(reply.zero, (z, i) => (z ? undefined : ids.subarray(i * ID_LENGTH, (i + 1) * ID_LENGTH))),
    };
  }

  /** Seals the given slots of a hashed batch into the worker's pack, releases the batch; resolves the stored bytes. */
  async seal(handle: HashedBatch['handle'], slots: readonly number[]): Promise<number> {
    const reply = await this.#call(handle.worker, { op: 'seal', batch: handle.batch, slots }, [], 'sealed');
    if (reply.input && this.#spare.length < 8) this.#spare.push(reply.input);
    return reply.storedBytes;
  }

  /** Seals one blob (an index page or root) into a worker's pack; resolves its stored bytes. */
  async sealBlob(id: Buffer, type: number, plain: Buffer): Promise<number> {
    const reply = await this.#call(this.#leastBusy(), { op: 'blob', batch: this.#nextBatch++, id, type, plain }, [], 'stored');
    return reply.storedBytes;
  }

  /** Finishes every worker's open pack; each arrives through onPack before this resolves. */
  async flushPacks(): Promise<void> {
    await Promise.all(this.#workers.map((_, w) => this.#call(w, { op: 'flush', batch: this.#nextBatch++ }, [], 'flushed')));
  }

  /** Hands an uploaded pack's buffer back to the worker that built it. */
  recycle(worker: number, buf: ArrayBuffer): void {
    if (this.#failure === undefined) this.#workers[worker]?.postMessage({ op: 'recycle', batch: -1, buf } satisfies WorkerRequest, [buf]);
  }

  /** A buffer of at least `length` bytes to read a span into (reused after release()). */
  spanBuffer(length: number): Buffer {
    const at = this.#spareSpans.findIndex((b) => b.byteLength >= length);
    return at >= 0 ? Buffer.from(this.#spareSpans.splice(at, 1)[0]!, 0, length) : Buffer.from(new ArrayBuffer(length));
  }

  /**
   * Opens (checks, decrypts, decompresses) the blobs of a span of stored bytes and writes blob
   * i's plaintext to `fd` at every offset in `targets[i]`. `data` (ownership moves to the pool,
   * which reuses it for spanBuffer()) starts at blob offset 0.
   */
  async openToFile(data: Buffer, blobs: readonly SpanBlob[], fd: number, targets: readonly (readonly number[])[]): Promise<WrittenSpan> {
    const worker = this.#leastBusy();
    const buf = data.byteOffset === 0 ? (data.buffer as ArrayBuffer) : transferable(data);
    const reply = await this.#call(worker, { op: 'open', batch: this.#nextBatch++, buf, blobs, fd, targets }, [buf], 'opened');
    if (this.#spareSpans.length < MAX_SPARE_SPANS) this.#spareSpans.push(reply.span);
    return { written: reply.written, errors: blobs.map((_, i) => (reply.errors[i] === undefined ? undefined : new RepoError('ECORRUPT', reply.errors[i]))) };
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
