// Worker thread of the chunk pool: hashes a batch of slots (and spots all-zero ones), keeps the
// batch until the main thread says which slots the repository lacks, then seals only those,
// straight into the pack it is building. Two steps so a mostly-unchanged disk costs hashing,
// not compression. For restore, it opens (checks, decrypts, decompresses) a span of a pack
// and writes the plaintexts into the image itself (pwritev on a shared fd: no copy back).

import { closeSync, openSync, readSync, writevSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { loadNative } from '../core/native.js';
import { pageAlignedBuffer } from '../core/page-aligned.js';
import { SharedMutex } from '../core/shared-mutex.js';
import { BlobCodec, BlobType, ID_LENGTH, isAllZero } from './blob-codec.js';
import type { MasterKey } from './keys.js';
import { PackAssembler, type AssembledPack } from './pack-assembler.js';

/**
 * Bytes the main thread lends a worker: `length` bytes at `offset` of its shared buffer `slab`.
 * `sab` comes with the first loan of a slab to this worker only (see ChunkPool).
 */
export interface Loan {
  readonly slab: number;
  readonly sab?: SharedArrayBuffer;
  readonly offset: number;
  readonly length: number;
}

export type WorkerRequest =
  /** The first message: a worker starts without settings, so it can load before the key is known. */
  | { readonly op: 'init'; readonly batch: number; readonly settings: WorkerSettings }
  | { readonly op: 'hash'; readonly batch: number; readonly loan: Loan; readonly chunkSize: number }
  | { readonly op: 'seal'; readonly batch: number; readonly slots: readonly number[] }
  | { readonly op: 'blob'; readonly batch: number; readonly id: Uint8Array; readonly type: number; readonly plain: Uint8Array }
  | { readonly op: 'flush'; readonly batch: number }
  | { readonly op: 'recycle'; readonly batch: number; readonly slot: number }
  /**
   * Opens a span's blobs (lent by the main thread, or read by the worker from a local file) and
   * writes blob i's plaintext to `fd` at each offset in `targets[i]`.
   */
  | { readonly op: 'open'; readonly batch: number; readonly source: Loan | FileRange; readonly blobs: readonly SpanBlob[]; readonly fd: number; readonly targets: readonly (readonly number[])[] };

/** Bytes [offset, offset + length) of a local file (see LocalFiles), which the worker reads itself. */
export interface FileRange {
  readonly path: string;
  readonly offset: number;
  readonly length: number;
}

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

export type WorkerReply =
  | { readonly op: 'hashed'; readonly batch: number; readonly ids: ArrayBuffer; readonly zero: Uint8Array }
  /** The batch's loan ends with this reply. */
  | { readonly op: 'sealed'; readonly batch: number; readonly storedBytes: number }
  | { readonly op: 'stored'; readonly batch: number; readonly storedBytes: number }
  | { readonly op: 'flushed'; readonly batch: number }
  /**
   * A finished pack, sent unasked (batch -1) before the reply of the request that filled it: in
   * [offset, offset + length) of the worker's pack buffer `slot`; `sab` comes with a slot's first
   * pack only.
   */
  | { readonly op: 'pack'; readonly batch: number; readonly slot: number; readonly sab?: SharedArrayBuffer; readonly offset: number; readonly length: number; readonly trailerAt: number; readonly id: string }
  /** `errors[i]` says why blob i failed its checks (and was not written); the loan ends with this reply. */
  | { readonly op: 'opened'; readonly batch: number; readonly written: number; readonly errors: (string | undefined)[] }
  | { readonly op: 'error'; readonly batch: number; readonly message: string };

export interface WorkerSettings {
  readonly key: MasterKey | null;
  readonly level: number;
  readonly packSize: number;
  /** One SharedMutex for the pool's workers, held around every write into a restored image. */
  readonly writeLock: SharedArrayBuffer;
}

interface WorkerState {
  // A file takes one buffered write at a time (ext4 holds the inode lock through the copy), and a
  // worker waiting for that lock in the kernel spins on its core (~9% of a restore's CPU): waiting
  // here sleeps instead, leaving the core to the main thread and the kernel's writeback.
  readonly writeLock: SharedMutex;
  readonly codec: BlobCodec;
  readonly packs: PackAssembler;
}

let state: WorkerState | undefined;

function setUp(settings: WorkerSettings): WorkerState {
  const { key, level, packSize, writeLock } = settings;
  const codec = new BlobCodec(key ? { dataKey: Buffer.from(key.dataKey), idKey: Buffer.from(key.idKey) } : null, level);
  return { writeLock: new SharedMutex(writeLock), codec, packs: new PackAssembler(codec, packSize) };
}

function ready(): WorkerState {
  if (!state) throw new Error('chunk worker used before its init message');
  return state;
}
// Batches hashed but not yet sealed, by batch number, with their slot ids.
const held = new Map<number, { buf: Buffer; chunkSize: number; ids: Buffer }>();
// The main thread's shared buffers, by slab number, and the pack slots it already holds.
const slabs = new Map<number, SharedArrayBuffer>();
const packSlotsSent = new Set<number>();

function borrow(loan: Loan): Buffer {
  if (loan.sab) slabs.set(loan.slab, loan.sab);
  const sab = slabs.get(loan.slab);
  if (!sab) throw new Error(`unknown shared buffer ${loan.slab}`);
  return Buffer.from(sab, loan.offset, loan.length);
}

function slotBytes(buf: Buffer, chunkSize: number, slot: number): Buffer {
  return buf.subarray(slot * chunkSize, Math.min(buf.length, (slot + 1) * chunkSize));
}

function send(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(reply, transfer);
}

/** Sends finished packs ahead of the reply, so the main thread starts their uploads first. */
function sendPacks(finished: AssembledPack[]): void {
  for (const { slot, buf, offset, length, trailerAt, id } of finished) {
    const sab = packSlotsSent.has(slot) ? undefined : buf;
    packSlotsSent.add(slot);
    send({ op: 'pack', batch: -1, slot, sab, offset, length, trailerAt, id });
  }
}

/**
 * Restore's plaintext buffer, reused group after group: a span's blobs are opened into it until
 * it is full, written, and the next ones opened over it. Sized for the whole span instead, it had
 * grown to 32 MiB per worker on spans of small stored chunks (4 KiB of data among zeros
 * compresses to little), memory every restore touched for the first time: on this VM, where
 * freed memory goes back to the host, 1.59-1.73 s vs 1.77-1.92 s per restore, peak RSS 145 MiB
 * vs 214-254.
 */
let plainBuf = Buffer.alloc(0);
const PLAIN_BUFFER = 4 * 1024 * 1024;
/** Buffers per writev call (Linux IOV_MAX is 1024). */
const MAX_IOV = 1024;
/**
 * Bytes per write call: writes of several MiB into new page-cache pages measured 10-20x slower
 * per byte than 256 KiB-1 MiB ones here (Node's writeFile uses 512 KiB pieces too).
 */
const MAX_WRITE = 512 * 1024;
/** Restored images start as holes: pages of zeros inside a chunk are left as holes too. */
const PAGE = 4096;

// Spans read from local files, into one buffer reused span after span (page-aligned: the kernel's
// copy into it runs faster, see page-aligned.ts).
let fileSpanBuf: Buffer = Buffer.alloc(0);

/** Reads a span from a local file; shorter than asked at the end of the file. */
function readRange(range: FileRange): Buffer {
  if (fileSpanBuf.length < range.length) fileSpanBuf = pageAlignedBuffer(Math.max(range.length, 4 * 1024 * 1024), false);
  const fd = openSync(range.path, 'r');
  try {
    let done = 0;
    while (done < range.length) {
      const n = readSync(fd, fileSpanBuf, done, range.length - done, range.offset + done);
      if (n === 0) break;
      done += n;
    }
    return fileSpanBuf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

function openSpan(msg: Extract<WorkerRequest, { op: 'open' }>): void {
  const { codec } = ready();
  let span: Buffer;
  try {
    span = 'path' in msg.source ? readRange(msg.source) : borrow(msg.source);
  } catch (err) {
    // A pack missing or unreadable: every blob failed, and the main thread finds out what is damaged.
    const message = err instanceof Error ? err.message : String(err);
    send({ op: 'opened', batch: msg.batch, written: 0, errors: msg.blobs.map(() => message) });
    return;
  }
  const largest = msg.blobs.reduce((max, b) => Math.max(max, b.rawLength), 0);
  if (plainBuf.length < Math.max(PLAIN_BUFFER, largest)) plainBuf = Buffer.allocUnsafeSlow(Math.max(PLAIN_BUFFER, largest));
  const errors: (string | undefined)[] = [];
  let writes: { offset: number; plain: Buffer }[] = [];
  let used = 0;
  msg.blobs.forEach((b, i) => {
    try {
      if (b.flags && used + b.rawLength > plainBuf.length) {
        writeRuns(msg.fd, writes); // before plainBuf is opened into again
        writes = [];
        used = 0;
      }
      const stored = span.subarray(b.at, b.at + b.storedLength);
      if (stored.length !== b.storedLength) throw new Error('short read');
      const ref = { ...b, id: Buffer.from(b.id.buffer, b.id.byteOffset, b.id.byteLength) };
      const plain = codec.openInto(ref, stored, 'span', plainBuf, used);
      if (plain.buffer === plainBuf.buffer) used += plain.length;
      for (const offset of msg.targets[i]!) pushNonZero(writes, offset, plain);
    } catch (err) {
      errors[i] = err instanceof Error ? err.message : String(err);
    }
  });
  writeRuns(msg.fd, writes);
  // Progress counts every byte restored, holes left for zero pages included.
  const written = msg.blobs.reduce((sum, b, i) => sum + (errors[i] === undefined ? b.rawLength * msg.targets[i]!.length : 0), 0);
  send({ op: 'opened', batch: msg.batch, written, errors });
}

/**
 * Queues the pages of `plain` that are not all zero, in runs. Zero pages inside a chunk are common
 * (a 4 KiB write into an empty 64 KiB region, free space in a file system): leaving them unwritten
 * keeps the restored image as sparse as the original and saves their copy into the page cache.
 */
function pushNonZero(writes: { offset: number; plain: Buffer }[], offset: number, plain: Buffer): void {
  let runStart = -1;
  for (let at = 0; at < plain.length; at += PAGE) {
    const end = Math.min(at + PAGE, plain.length);
    // The first and last byte settle almost every page of data without a full compare.
    const zero = plain[at] === 0 && plain[end - 1] === 0 && isAllZero(plain.subarray(at, end));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      writes.push({ offset: offset + runStart, plain: plain.subarray(runStart, at) });
      runStart = -1;
    }
  }
  if (runStart === 0) writes.push({ offset, plain });
  else if (runStart > 0) writes.push({ offset: offset + runStart, plain: plain.subarray(runStart) });
}

/**
 * Writes plaintexts at their offsets: each run of back-to-back targets allocated first when long
 * enough (see preallocateRun), then written in pwritevs of at most MAX_WRITE bytes, adjacent
 * buffers merged.
 */
function writeRuns(fd: number, writes: { offset: number; plain: Buffer }[]): void {
  const { writeLock } = ready();
  writes.sort((a, b) => a.offset - b.offset);
  for (let i = 0; i < writes.length; ) {
    let runEnd = writes[i]!.offset;
    let last = i;
    for (; last < writes.length && writes[last]!.offset === runEnd; last++) runEnd += writes[last]!.plain.length;
    preallocateRun(fd, writes[i]!.offset, runEnd - writes[i]!.offset, writeLock);
    while (i < last) {
      const position = writes[i]!.offset;
      const iov: Buffer[] = [];
      let end = position;
      for (; i < last && iov.length < MAX_IOV; i++) {
        const { plain } = writes[i]!;
        if (end > position && end - position + plain.length > MAX_WRITE) break;
        const prev = iov[iov.length - 1];
        if (prev && prev.buffer === plain.buffer && prev.byteOffset + prev.length === plain.byteOffset) iov[iov.length - 1] = Buffer.from(prev.buffer, prev.byteOffset, prev.length + plain.length);
        else iov.push(plain);
        end += plain.length;
      }
      writeLock.lock();
      try {
        writeAll(fd, iov, position);
      } finally {
        writeLock.unlock();
      }
    }
  }
}

/** Shorter runs are left to the file system's delayed allocation (see preallocateRun). */
const PREALLOCATE_MIN = 256 * 1024;
let preallocating = true;

/**
 * Allocates a run of data about to be written into the restored image (fallocate, as unwritten
 * extents) when it is at least PREALLOCATE_MIN bytes. Written into a hole as it is, ext4 reserves
 * and tracks each 4 KiB block of a buffered write on its own (delayed allocation) and allocates
 * them at write-back; one fallocate per run does it up front. On the bench image (2 GiB of data
 * in 4 GiB): 1.89-1.97 s vs 2.02-2.26 s per restore, system time 1.09-1.21 s vs 1.22-1.42. Only bytes about to be
 * written are allocated, so zero pages stay holes. Best effort: the first refusal (a block device,
 * a file system without fallocate, a full disk) stops it, and the writes decide what fits.
 */
function preallocateRun(fd: number, offset: number, length: number, writeLock: SharedMutex): void {
  if (!preallocating || length < PREALLOCATE_MIN) return;
  writeLock.lock(); // fallocate takes the inode lock the writes take
  try {
    loadNative().allocate(fd, offset, length);
  } catch {
    preallocating = false;
  } finally {
    writeLock.unlock();
  }
}

function writeAll(fd: number, iov: Buffer[], position: number): void {
  let rest = iov;
  while (rest.length > 0) {
    let n = writevSync(fd, rest, position);
    if (n === 0) throw new Error(`writing the restored image at offset ${position} made no progress`);
    position += n;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (n >= b.length) n -= b.length;
      else {
        next.push(n > 0 ? b.subarray(n) : b);
        n = 0;
      }
    }
    rest = next;
  }
}

function handle(msg: WorkerRequest): void {
  if (msg.op === 'init') {
    state = setUp(msg.settings);
    return;
  }
  const { codec, packs } = ready();
  switch (msg.op) {
    case 'open':
      return openSpan(msg);
    case 'hash': {
      const buf = borrow(msg.loan);
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
      return send({ op: 'sealed', batch: msg.batch, storedBytes });
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
      return packs.recycle(msg.slot);
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
