// Restore: rebuilds a backup's image into a file. Zero slots are left as holes (the file is
// truncated to size first); data slots are fetched in coalesced range reads, several at once,
// each blob checked (crc, gcm tag, hash) in the chunk worker pool, which also writes the
// plaintexts (one pwritev per run of consecutive slots). The main thread plans; it reads the
// spans too, unless the packs are files on this host, which the workers read themselves.
// The image is written back as it goes (every 64 MiB by default, in the background) and what is on
// disk leaves the page cache: restoring a large disk must not fill the host's cache, and later
// writes reuse the freed pages instead of faulting in new ones (on a VM, fresh page-cache pages
// cost several times the copy into them).

import { open, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { writeBackAndUncache } from '../core/native.js';
import { ZERO_ID } from './blob-codec.js';
import type { BlobLocation } from './catalog.js';
import { ChunkPool } from './chunk-pool.js';
import { RepoError } from './errors.js';
import { pageSlot, SLOTS_PER_PAGE } from './index-format.js';
import type { Manifest } from './manifest.js';
import { packKey } from './pack-format.js';
import type { Repository } from './repository.js';
import { runBounded } from './run-bounded.js';
import { localFilesOf } from './stores/local-files.js';
import type { ReadsInto } from './stores/reads-into.js';

export interface RestoreProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface RestoreOptions {
  /** Spans fetched and opened at once (default 6). */
  readonly concurrency?: number;
  /** Chunk worker threads (default: one per core). */
  readonly workers?: number;
  /** fsync the image at the end (default true). Without it the restore still writes back as it goes. */
  readonly sync?: boolean;
  /** Bytes restored between background write-backs (and evictions) of the image (default 64 MiB). */
  readonly writeBackEvery?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: RestoreProgress) => void;
}

interface Span {
  readonly pack: string;
  readonly offset: number;
  length: number;
  readonly blobs: { readonly location: BlobLocation; readonly slots: number[] }[];
}

const WINDOW_BYTES = 32 * 1024 * 1024;
const MAX_SPAN = 4 * 1024 * 1024;
const MAX_GAP = 256 * 1024;
const WRITE_BACK_EVERY = 64 * 1024 * 1024;

export async function runRestore(repo: Repository, manifest: Manifest, target: string, options: RestoreOptions = {}): Promise<void> {
  const { signal } = options;
  const pageIds = await repo.pageIds(manifest, { signal });
  const file = await open(target, 'w');
  const pool = new ChunkPool(repo.masterKey, repo.config.compression.level, options.workers ?? availableParallelism());
  let bytesDone = 0;
  const sync = options.sync ?? true;
  // One write-back at a time, started once writeBackEvery more bytes were restored since the last.
  const writeBackEvery = options.writeBackEvery ?? WRITE_BACK_EVERY;
  let writeBack: Promise<void> | undefined;
  let writtenBackAt = 0;
  const recycle = (): void => {
    if (writeBack || bytesDone - writtenBackAt < writeBackEvery) return;
    writtenBackAt = bytesDone;
    writeBack = writeBackAndUncache(file).then(
      () => {
        writeBack = undefined;
      },
      () => {
        writeBack = undefined; // the final sync reports what went wrong
      },
    );
  };
  try {
    await file.truncate(manifest.size);
    const chunkSize = manifest.chunkSize;
    // Local and S3 stores (and their wrappers) read into span buffers the pool reuses; others allocate per read.
    const readInto = (repo.store as Partial<ReadsInto>).readInto?.bind(repo.store);
    const maxSpan = (repo.store as Partial<ReadsInto>).preferredReadBytes ?? MAX_SPAN;
    // Over pack files on this host, the workers read their spans themselves (see LocalFiles).
    const files = localFilesOf(repo.store);
    const readSpan = async (span: Span): Promise<Buffer | undefined> => {
      // Every buffer of maxSpan bytes, so any free one fits any span: no fresh multi-MiB buffers to fault in.
      const spanBuf = readInto ? pool.buffer(Math.max(maxSpan, span.length)) : undefined;
      try {
        if (readInto) {
          const data = spanBuf!.subarray(0, span.length);
          if ((await readInto(packKey(span.pack), span.offset, data, { signal })) === span.length) return data;
        } else {
          const data = await repo.store.get(packKey(span.pack), { range: { offset: span.offset, length: span.length }, signal });
          if (data.length === span.length) return data;
        }
      } catch {
        // missing pack: each blob falls back to readBlob, which names the damage
      }
      if (spanBuf) pool.release(spanBuf); // openToFile releases it otherwise
      return undefined;
    };
    const fetchSpan = async (span: Span): Promise<void> => {
      const blobs = span.blobs.map(({ location: l }) => ({ at: l.offset - span.offset, id: l.id, type: l.type, flags: l.flags, storedLength: l.storedLength, rawLength: l.rawLength, crc: l.crc }));
      const targets = span.blobs.map(({ location, slots }) => slots.map((slot) => {
        const expected = Math.min(chunkSize, manifest.size - slot * chunkSize);
        if (location.rawLength !== expected) throw new RepoError('ECORRUPT', `chunk for slot ${slot} is ${location.rawLength} bytes, expected ${expected}`);
        return slot * chunkSize;
      }));
      const data = files ? { path: files.localPath(packKey(span.pack)), offset: span.offset, length: span.length } : await readSpan(span);
      const done = data ? await pool.openToFile(data, blobs, file.fd, targets) : { written: 0, errors: blobs.map(() => new RepoError('ECORRUPT', 'short read')) };
      bytesDone += done.written;
      for (let i = 0; i < span.blobs.length; i++) {
        if (!done.errors[i]) continue;
        // A damaged copy: try the others, or get a precise error.
        const { location } = span.blobs[i]!;
        const plain = await repo.readBlob(location.id, location.type, { signal });
        for (const position of targets[i]!) {
          if (plain.length !== location.rawLength) throw new RepoError('ECORRUPT', `chunk for slot ${position / chunkSize} is ${plain.length} bytes, expected ${location.rawLength}`);
          await writeAll(file, [plain], position);
          bytesDone += plain.length;
        }
      }
      options.onProgress?.({ bytesDone, bytesTotal: manifest.size });
      recycle();
    };
    await runBounded(spans(repo, manifest, pageIds, maxSpan, signal), fetchSpan, options.concurrency ?? 6, signal);
    await writeBack;
    if (sync) await file.sync();
  } finally {
    await writeBack;
    await pool.close();
    await file.close();
  }
}

/** writev that finishes short writes. */
async function writeAll(file: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let total = buffers.reduce((sum, b) => sum + b.length, 0);
  let { bytesWritten } = await file.writev(buffers, position);
  while (bytesWritten < total) {
    if (bytesWritten === 0) throw new RepoError('EINVALID', `writing the restored image at offset ${position} made no progress`);
    const rest = Buffer.concat(buffers).subarray(bytesWritten);
    position += bytesWritten;
    total = rest.length;
    buffers = [rest];
    ({ bytesWritten } = await file.writev(buffers, position));
  }
}

/** Range reads covering every data slot, a window of slots at a time (bounded memory). */
async function* spans(repo: Repository, manifest: Manifest, pageIds: Buffer[], maxSpan: number, signal?: AbortSignal): AsyncGenerator<[Span]> {
  const windowSlots = Math.max(1, Math.floor(WINDOW_BYTES / manifest.chunkSize));
  let window = new Map<string, { id: Buffer; slots: number[] }>();
  let windowCount = 0;
  const flush = function* (): Generator<[Span]> {
    // One catalog query per window rather than one per slot.
    const found = repo.catalog.locateMany([...window.values()].map((w) => w.id));
    const blobs = [...window].map(([hex, { slots }]) => {
      const location = found.get(hex)?.[0];
      if (!location) throw new RepoError('ENOTFOUND', `backup ${manifest.id}: chunk ${hex.slice(0, 16)} for slot ${slots[0]} is not in any pack`);
      return { location, slots };
    });
    blobs.sort((a, b) => (a.location.pack < b.location.pack ? -1 : a.location.pack > b.location.pack ? 1 : a.location.offset - b.location.offset));
    let span: Span | undefined;
    for (const blob of blobs) {
      const { pack, offset, storedLength } = blob.location;
      const end = offset + storedLength;
      if (span && span.pack === pack && offset >= span.offset + span.length && offset - (span.offset + span.length) <= MAX_GAP && end - span.offset <= maxSpan) {
        span.length = end - span.offset;
        span.blobs.push(blob);
        continue;
      }
      if (span) yield [span];
      span = { pack, offset, length: storedLength, blobs: [blob] };
    }
    if (span) yield [span];
    window = new Map();
    windowCount = 0;
  };
  for (let p = 0; p < pageIds.length; p++) {
    const page = await repo.page(pageIds[p]!, { signal });
    for (let i = 0; i < page.length / 32; i++) {
      const id = pageSlot(page, i);
      if (id.equals(ZERO_ID)) continue;
      const slot = p * SLOTS_PER_PAGE + i;
      const hex = id.toString('hex');
      const entry = window.get(hex);
      if (entry) entry.slots.push(slot);
      else window.set(hex, { id, slots: [slot] });
      if (++windowCount >= windowSlots) yield* flush();
    }
  }
  yield* flush();
}
