// Verify: re-reads and re-hashes every blob the selected backups need (index roots, pages,
// chunks: crc32, gcm tag, decompression, content hash) and reports exactly which backups are
// damaged and why. Never repairs or hides anything.

import { ZERO_ID, typeName } from './blob-codec.js';
import type { BlobLocation } from './catalog.js';
import { describeError } from '../core/errors.js';
import { isNotFound } from './errors.js';
import { SLOTS_PER_PAGE } from './index-format.js';
import type { Manifest } from './manifest.js';
import { packKey, packMatchesId } from './pack-format.js';
import type { Repository } from './repository.js';

export interface BackupVerdict {
  readonly id: string;
  readonly disk: string;
  readonly ok: boolean;
  /** Human-readable reasons, one per damaged blob (capped), e.g. "chunk 1a2b… (slot 17): crc32 mismatch". */
  readonly problems: readonly string[];
}

export interface VerifyReport {
  readonly backups: readonly BackupVerdict[];
  readonly chunksChecked: number;
  readonly bytesChecked: number;
  /** Packs whose bytes no longer hash to their id (damage outside any needed blob included). */
  readonly damagedPacks: readonly string[];
}

export interface VerifyOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (done: number, total: number) => void;
}

const MAX_PROBLEMS = 20;

export async function runVerify(repo: Repository, manifests: readonly Manifest[], options: VerifyOptions = {}): Promise<VerifyReport> {
  const { signal } = options;
  const problems = new Map<string, string[]>(manifests.map((m) => [m.id, []]));
  const pages = new Map<string, Buffer | string>(); // page id -> plaintext or error
  const pageLists = new Map<string, Buffer[]>();
  const needed = new Set<string>();
  // Pass 1: roots and pages, read from the store (not the catalog cache) and checked.
  for (const m of manifests) {
    let pageIds: Buffer[];
    try {
      pageIds = await repo.pageIds(m, { signal });
    } catch (err) {
      problems.get(m.id)!.push(`index root ${m.root.slice(0, 16)}: ${describeError(err)}`);
      continue;
    }
    pageLists.set(m.id, pageIds);
    for (const [p, id] of pageIds.entries()) {
      const hex = id.toString('hex');
      if (!pages.has(hex)) {
        try {
          pages.set(hex, await repo.readBlob(id, 1, { signal }));
        } catch (err) {
          pages.set(hex, describeError(err));
        }
      }
      const page = pages.get(hex)!;
      if (typeof page === 'string') problems.get(m.id)!.push(`index page ${p} (${hex.slice(0, 16)}): ${page}`);
      else for (let at = 0; at < page.length; at += 32) if (!page.subarray(at, at + 32).equals(ZERO_ID)) needed.add(page.subarray(at, at + 32).toString('hex'));
    }
  }
  // Pass 2: every needed chunk, pack by pack; a chunk is good if any of its copies is.
  const good = new Set<string>();
  const bad = new Map<string, string>();
  const byPack = new Map<string, BlobLocation[]>();
  for (const hex of needed) {
    const locations = repo.catalog.locate(Buffer.from(hex, 'hex'));
    // Manifests are written after their packs, so a referenced blob in no pack lost its pack.
    if (locations.length === 0) bad.set(hex, 'in no pack: the pack that held it is missing');
    for (const l of locations) {
      const list = byPack.get(l.pack);
      if (list) list.push(l);
      else byPack.set(l.pack, [l]);
    }
  }
  const damagedPacks: string[] = [];
  let bytesChecked = 0;
  let done = 0;
  for (const [pack, locations] of byPack) {
    let data: Buffer | undefined;
    let packError = '';
    try {
      data = await repo.store.get(packKey(pack), { signal });
      if (!packMatchesId(data, pack)) damagedPacks.push(pack);
    } catch (err) {
      packError = isNotFound(err) ? `pack ${pack.slice(0, 16)} is missing` : describeError(err);
    }
    for (const l of locations) {
      const hex = l.id.toString('hex');
      try {
        if (!data) throw new Error(packError);
        const stored = data.subarray(l.offset, l.offset + l.storedLength);
        if (stored.length !== l.storedLength) throw new Error(`truncated in pack ${pack.slice(0, 16)} (${stored.length} of ${l.storedLength} bytes)`);
        repo.codec.open(l, stored, `pack ${pack.slice(0, 16)}`);
        good.add(hex);
        bad.delete(hex);
        bytesChecked += l.rawLength;
      } catch (err) {
        if (!good.has(hex)) bad.set(hex, describeError(err));
      }
      options.onProgress?.(++done, needed.size);
    }
  }
  // Pass 3: name the slots of each backup that hit a bad chunk.
  if (bad.size > 0) {
    for (const m of manifests) {
      const list = problems.get(m.id)!;
      for (const [p, id] of (pageLists.get(m.id) ?? []).entries()) {
        const page = pages.get(id.toString('hex'));
        if (typeof page !== 'object') continue;
        for (let i = 0; i < page.length / 32; i++) {
          const hex = page.subarray(i * 32, i * 32 + 32).toString('hex');
          const why = bad.get(hex);
          if (why) list.push(`${typeName(0)} ${hex.slice(0, 16)} (slot ${p * SLOTS_PER_PAGE + i}): ${why}`);
        }
      }
    }
  }
  return {
    backups: manifests.map((m) => {
      const list = problems.get(m.id)!;
      const shown = list.length > MAX_PROBLEMS ? [...list.slice(0, MAX_PROBLEMS), `… and ${list.length - MAX_PROBLEMS} more`] : list;
      return { id: m.id, disk: m.disk, ok: list.length === 0, problems: shown };
    }),
    chunksChecked: needed.size,
    bytesChecked,
    damagedPacks,
  };
}
