// Shared helpers for repository tests: image generators (random, compressible, sparse),
// file hashing, a store wrapper counting bytes written, and a CLI runner.

import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GetOptions, PutOptions, Store, StoreSignal } from '../../src/repo/store.js';
import { run, type RunResult } from '../helpers/tools.js';

export type ImageKind = 'random' | 'compressible' | 'sparse';

/** Writes an image of `size` bytes (size need not be a multiple of any chunk size). */
export async function makeImage(path: string, kind: ImageKind, size: number): Promise<void> {
  if (kind === 'random') return writeFile(path, randomBytes(size));
  if (kind === 'compressible') {
    const line = Buffer.from('fleece compressible line of text 0123456789 abcdefghijklmnopqrstuvwxyz\n');
    const buf = Buffer.alloc(size);
    for (let at = 0; at < size; at += line.length) line.copy(buf, at);
    for (let i = 0; i < size; i += 4093) buf[i] = i & 0xff; // vary a little so chunks differ
    return writeFile(path, buf);
  }
  // sparse: holes, a few random islands, some explicit zero runs, data at the very end
  const file = await open(path, 'w');
  try {
    await file.truncate(size);
    for (let at = 37_000; at < size; at += 997_000) await file.write(randomBytes(Math.min(50_000, size - at)), 0, undefined, at);
    await file.write(Buffer.alloc(300_000), 0, undefined, Math.min(size - 300_000, 2_000_000));
    await file.write(randomBytes(1000), 0, undefined, size - 1000);
  } finally {
    await file.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Wraps a store and counts what is written and deleted (to prove data is never rewritten). */
export class CountingStore implements Store {
  readonly inner: Store;
  bytesPut = 0;
  puts: string[] = [];
  deletes: string[] = [];

  constructor(inner: Store) {
    this.inner = inner;
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<{ written: boolean }> {
    this.bytesPut += data.byteLength;
    this.puts.push(key);
    return this.inner.put(key, data, options);
  }

  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.inner.get(key, options);
  }

  stat(key: string, options?: StoreSignal) {
    return this.inner.stat(key, options);
  }

  list(prefix: string, options?: StoreSignal) {
    return this.inner.list(prefix, options);
  }

  delete(key: string, options?: StoreSignal): Promise<void> {
    this.deletes.push(key);
    return this.inner.delete(key, options);
  }
}

const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '../../src/cli/fleece.cjs');

/** Runs the fleece CLI against a repository; never throws on a non-zero status. */
export function fleece(repo: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return run(process.execPath, [MAIN, ...args], { env: { ...process.env, FLEECE_REPO: repo, ...env }, timeoutMs: 120_000 });
}

export const FLEECE_MAIN = MAIN;

/** Restores every backup of a repository in-process and returns id -> sha256 of the image. */
export async function restoreAll(repoDir: string, scratch: string, passphrase?: string): Promise<Map<string, { sha: string; tags: readonly string[] }>> {
  const { Repository } = await import('../../src/repo/repository.js');
  const { LocalStore } = await import('../../src/repo/stores/local-store.js');
  const { runRestore } = await import('../../src/repo/restore-engine.js');
  const repo = await Repository.open(new LocalStore(repoDir), { secret: passphrase === undefined ? {} : { passphrase } });
  try {
    await repo.syncCatalog();
    const out = new Map<string, { sha: string; tags: readonly string[] }>();
    for (const m of repo.catalog.backups()) {
      const target = join(scratch, `restore-${m.id}.img`);
      await runRestore(repo, m, target);
      out.set(m.id, { sha: await sha256File(target), tags: m.tags });
      await (await import('node:fs/promises')).unlink(target);
    }
    return out;
  } finally {
    repo.close();
  }
}
