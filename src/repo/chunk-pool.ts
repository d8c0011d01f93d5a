// A pool of chunk workers (one per core): the backup engine hands it batches of slots to hash,
// then asks the same worker to seal the slots the repository lacks into the pack that worker
// is building; finished packs come back through `onPack`, ready to upload. A batch stays pinned
// to the worker that holds its bytes between the two steps. Restore hands it spans to open and
// write into the image.
//
// Bytes cross between threads in SharedArrayBuffers that each cross once: batches and spans in
// the pool's slabs, packs in the workers' pack slots; messages after the first name them by
// number. Ownership passes by protocol (a loan ends with its reply). Transferring a fresh
// ArrayBuffer per message instead shows up as new external memory in the receiving thread every
// time, and V8 answers that with full garbage collections: about two per pack, 1.2 s of
// main-thread CPU in a 4 GiB backup.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SharedMutex } from '../core/shared-mutex.js';
import { pageAlignedBuffer } from '../core/page-aligned.js';
import { ID_LENGTH } from './blob-codec.js';
import { RepoError } from './errors.js';
import type { MasterKey } from './keys.js';
import type { AssembledPack } from './pack-assembler.js';
import type { FileRange, Loan, SpanBlob, WorkerReply, WorkerRequest } from './chunk-worker.js';

export interface HashedBatch {
  readonly handle: { readonly worker: number; readonly batch: number; readonly slab: number };
  /** ids[i] is slot i's id, or undefined when the slot is all zero. */
  readonly ids: (Buffer | undefined)[];
}

export interface ChunkPoolOptions {
  /** Target pack size for packs the workers build (backup only). */
  readonly packSize?: number;
  /** Receives every pack a worker finished; hand its slot back with recycle() once stored. */
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

// Workers started ahead of a pool (ChunkPool.prestart), unreferenced: an idle spare never keeps
// the process alive.
const spares: Worker[] = [];

function spawnWorker(): Worker {
  return new Worker(new URL('./chunk-worker.js', import.meta.url));
}

export class ChunkPool {
  readonly #workers: Worker[] = [];
  // Per worker: outstanding requests by batch number, and how many there are (for balancing).
  readonly #pending: Map<number, Pending>[] = [];
  #nextBatch = 0;
  // Slabs lent for batches and spans (by number), those free, which ones each worker already
  // holds, and per worker its pack slots' buffers.
  readonly #slabs: SharedArrayBuffer[] = [];
  readonly #slabOf = new Map<SharedArrayBuffer, number>();
  // Where each slab's page-aligned bytes begin.
  readonly #slabStart: number[] = [];
  readonly #freeSlabs: number[] = [];
  readonly #lent: Set<number>[] = [];
  readonly #packSlots: Map<number, SharedArrayBuffer>[] = [];
  #failure: unknown;

  /**
   * Starts `count` chunk workers for the next pool to take. A worker spends ~50-80 ms loading its
   * modules before it can take a batch: started first thing, that overlaps the passphrase's
   * scrypt, the catalog's opening and a restore's planning instead of following them.
   */
  static prestart(count = availableParallelism()): void {
    while (spares.length < count) {
      const worker = spawnWorker();
      worker.unref();
      // A spare that fails before a pool takes it is dropped (the pool then starts a fresh one).
      const drop = (): void => {
        const at = spares.indexOf(worker);
        if (at >= 0) spares.splice(at, 1);
      };
      worker.on('error', drop).once('exit', drop);
      spares.push(worker);
    }
  }

  constructor(key: MasterKey | null, level: number, size = availableParallelism(), options: ChunkPoolOptions = {}) {
    const writeLock = SharedMutex.buffer();
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = spares.shift() ?? spawnWorker();
      worker.ref();
      // Settings go as the first message, not workerData, so a spare could start without them.
      worker.postMessage({ op: 'init', batch: -1, settings: { key, level, packSize: options.packSize ?? 0, writeLock } } satisfies WorkerRequest);
      const pending = new Map<number, Pending>();
      const packSlots = new Map<number, SharedArrayBuffer>();
      worker.on('message', (reply: WorkerReply) => {
        if (reply.op === 'pack') {
          const { slot, sab, offset, length, trailerAt, id } = reply;
          if (sab) packSlots.set(slot, sab);
          const buf = packSlots.get(slot);
          if (buf) options.onPack?.({ slot, buf, offset, length, trailerAt, id }, i);
          else this.#failure ??= new RepoError('EINVALID', `chunk worker sent pack slot ${slot} without its buffer`);
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
      this.#lent.push(new Set());
      this.#packSlots.push(packSlots);
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

  /** A buffer of `length` bytes (a batch for hash(), a span for openToFile()): a free slab, or a new one. */
  buffer(length: number): Buffer {
    const at = this.#freeSlabs.findIndex((n) => this.#slabs[n]!.byteLength - this.#slabStart[n]! >= length);
    let slab: number;
    if (at >= 0) slab = this.#freeSlabs.splice(at, 1)[0]!;
    else {
      // Page-aligned: reads into the slab are copies the kernel makes (see page-aligned.ts).
      const view = pageAlignedBuffer(length, true);
      const sab = view.buffer as SharedArrayBuffer;
      slab = this.#slabs.push(sab) - 1;
      this.#slabStart[slab] = view.byteOffset;
      this.#slabOf.set(sab, slab);
    }
    return Buffer.from(this.#slabs[slab]!, this.#slabStart[slab], length);
  }

  /**
   * Lends `data` to a worker: a view of one of the pool's slabs as it is, anything else copied
   * into one. The slab is busy until #release(loan.slab).
   */
  #lend(worker: number, data: Buffer): Loan {
    let slab = data.buffer instanceof SharedArrayBuffer ? this.#slabOf.get(data.buffer) : undefined;
    let offset = data.byteOffset;
    if (slab === undefined || this.#freeSlabs.includes(slab)) {
      const copy = this.buffer(data.length);
      data.copy(copy);
      slab = this.#slabOf.get(copy.buffer as SharedArrayBuffer)!;
      offset = copy.byteOffset;
    }
    const lent = this.#lent[worker]!;
    const sab = lent.has(slab) ? undefined : this.#slabs[slab];
    lent.add(slab);
    return { slab, sab, offset, length: data.length };
  }

  /** Gives back a buffer from buffer() that was never passed on. */
  release(buf: Buffer): void {
    const slab = buf.buffer instanceof SharedArrayBuffer ? this.#slabOf.get(buf.buffer) : undefined;
    if (slab !== undefined) this.#release(slab);
  }

  #release(slab: number): void {
    if (!this.#freeSlabs.includes(slab)) this.#freeSlabs.push(slab);
  }

  /** Hashes the slots of `data` (best from buffer(); the pool owns it until seal()); the last slot may be short. */
  async hash(data: Buffer, chunkSize: number): Promise<HashedBatch> {
    const worker = this.#leastBusy();
    const batch = this.#nextBatch++;
    const loan = this.#lend(worker, data);
    const reply = await this.#call(worker, { op: 'hash', batch, loan, chunkSize }, [], 'hashed');
    const ids = Buffer.from(reply.ids);
    return {
      handle: { worker, batch, slab: loan.slab },
      ids: Array.from(reply.zero, (z, i) => (z ? undefined : ids.subarray(i * ID_LENGTH, (i + 1) * ID_LENGTH))),
    };
  }

  /** Seals the given slots of a hashed batch into the worker's pack, releases the batch; resolves the stored bytes. */
  async seal(handle: HashedBatch['handle'], slots: readonly number[]): Promise<number> {
    const reply = await this.#call(handle.worker, { op: 'seal', batch: handle.batch, slots }, [], 'sealed');
    this.#release(handle.slab);
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

  /** Hands an uploaded pack's slot back to the worker that built it. */
  recycle(worker: number, slot: number): void {
    if (this.#failure === undefined) this.#workers[worker]?.postMessage({ op: 'recycle', batch: -1, slot } satisfies WorkerRequest);
  }

  /**
   * Opens (checks, decrypts, decompresses) the blobs of a span of stored bytes and writes blob
   * i's plaintext to `fd` at every offset in `targets[i]`. The span starts at blob offset 0:
   * `data` (best from buffer(); the pool reuses it once this resolves), or a range of a local
   * file that the worker reads itself (shorter at the end of the file: those blobs fail).
   */
  async openToFile(data: Buffer | FileRange, blobs: readonly SpanBlob[], fd: number, targets: readonly (readonly number[])[]): Promise<WrittenSpan> {
    const worker = this.#leastBusy();
    const loan = Buffer.isBuffer(data) ? this.#lend(worker, data) : undefined;
    let reply: Extract<WorkerReply, { op: 'opened' }>;
    try {
      reply = await this.#call(worker, { op: 'open', batch: this.#nextBatch++, source: loan ?? (data as FileRange), blobs, fd, targets }, [], 'opened');
    } finally {
      if (loan) this.#release(loan.slab);
    }
    return { written: reply.written, errors: blobs.map((_, i) => (reply.errors[i] === undefined ? undefined : new RepoError('ECORRUPT', reply.errors[i]))) };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
