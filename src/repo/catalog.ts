// The catalog: a SQLite cache of manifests and pack indexes (and decoded index pages) that
// makes listing, dedup lookups and reference counts fast. Never the source of truth: every
// row is derived from the store and `Repository.syncCatalog()` / rebuild recreate it.

import { open } from 'node:fs/promises';
import Database from 'better-sqlite3';
import type { Manifest } from './manifest.js';
import type { PackEntry } from './pack-format.js';

export interface BlobLocation extends PackEntry {
  readonly pack: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS backups(id TEXT PRIMARY KEY, disk TEXT NOT NULL, time TEXT NOT NULL, manifest TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS backups_disk ON backups(disk, time);
CREATE TABLE IF NOT EXISTS packs(id TEXT PRIMARY KEY, size INTEGER NOT NULL, blobs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blobs(id BLOB NOT NULL, pack TEXT NOT NULL, type INTEGER NOT NULL, flags INTEGER NOT NULL,
  off INTEGER NOT NULL, stored INTEGER NOT NULL, raw INTEGER NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY(id, pack)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_pack ON blobs(pack);
CREATE TABLE IF NOT EXISTS pages(id BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
`;

interface BlobRow { id: Buffer; pack: string; type: number; flags: number; off: number; stored: number; raw: number; crc: number }

/** Prefetch reads: size and how many are in flight. */
const PREFETCH_READ = 1024 * 1024;
const PREFETCH_IN_FLIGHT = 4;
/** Larger catalogs are not read ahead: reading them whole would cost more than most backups' lookups. */
const PREFETCH_MAX = 1024 * 1024 * 1024;

export class Catalog {
  readonly #db: Database.Database;
  readonly #path: string;
  readonly #locate: Database.Statement<[Buffer], BlobRow>;
  readonly #insertBlob: Database.Statement;
  // Prepared `id IN (…)` queries by number of ids (the full batch size recurs).
  readonly #locateMany = new Map<number, Database.Statement>();

  constructor(path: string) {
    this.#path = path;
    this.#db = new Database(path, { timeout: 30_000 });
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(SCHEMA);
    this.#locate = this.#db.prepare('SELECT * FROM blobs WHERE id = ?');
    this.#insertBlob = this.#db.prepare('INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  }

  close(): void {
    this.#db.close();
  }

  /**
   * Reads the database file once, sequentially and in the background, so that the page cache
   * holds it before a backup's dedup lookups start. A catalog that has not been used for a while
   * is no longer cached, and SQLite would then read it one random page at a time, on the main
   * thread, for every batch of chunk ids (measured: 9,600 lookups in a 200 MB catalog took 1.4 s
   * cold and 0.15 s cached). Best effort: errors only mean the lookups read for themselves.
   * Stops early once `signal` aborts (the caller is done with the catalog).
   */
  async prefetch(signal: AbortSignal): Promise<void> {
    if (this.#path === ':memory:' || this.#path === '') return;
    try {
      const handle = await open(this.#path, 'r');
      try {
        const size = (await handle.stat()).size;
        if (size > PREFETCH_MAX) return;
        let next = 0;
        await Promise.all(
          Array.from({ length: PREFETCH_IN_FLIGHT }, async () => {
            const buffer = Buffer.allocUnsafe(PREFETCH_READ);
            while (next < size && !signal.aborted) {
              const at = next;
              next += PREFETCH_READ;
              await handle.read(buffer, 0, PREFETCH_READ, at);
            }
          }),
        );
      } finally {
        await handle.close();
      }
    } catch {
      // the lookups still work, one page at a time
    }
  }

  /** Every place a blob is stored (several when concurrent backups stored it twice). */
  locate(id: Buffer): BlobLocation[] {
    return this.#locate.all(id).map(toLocation);
  }

  /** Every location of each of the given ids that is stored anywhere, by hex id (one query per 500 ids). */
  locateMany(ids: readonly Buffer[]): Map<string, BlobLocation[]> {
    const found = new Map<string, BlobLocation[]>();
    for (let at = 0; at < ids.length; at += 500) {
      const part = ids.slice(at, at + 500);
      let statement = this.#locateMany.get(part.length);
      if (!statement) {
        statement = this.#db.prepare(`SELECT * FROM blobs WHERE id IN (${part.map(() => '?').join(',')})`);
        if (this.#locateMany.size < 8) this.#locateMany.set(part.length, statement);
      }
      const rows = statement.all(...part) as BlobRow[];
      for (const row of rows) {
        const hex = row.id.toString('hex');
        const list = found.get(hex);
        if (list) list.push(toLocation(row));
        else found.set(hex, [toLocation(row)]);
      }
    }
    return found;
  }

  addPack(pack: string, size: number, entries: readonly PackEntry[]): void {
    this.#db.transaction(() => {
      this.#db.prepare('INSERT OR REPLACE INTO packs VALUES (?, ?, ?)').run(pack, size, entries.length);
      for (const e of entries) this.#insertBlob.run(e.id, pack, e.type, e.flags, e.offset, e.storedLength, e.rawLength, e.crc);
    })();
  }

  removePack(pack: string): void {
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM blobs WHERE pack = ?').run(pack);
      this.#db.prepare('DELETE FROM packs WHERE id = ?').run(pack);
    })();
  }

  packs(): Map<string, { size: number; blobs: number }> {
    const rows = this.#db.prepare('SELECT id, size, blobs FROM packs').all() as { id: string; size: number; blobs: number }[];
    return new Map(rows.map((r) => [r.id, { size: r.size, blobs: r.blobs }]));
  }

  packEntries(pack: string): BlobLocation[] {
    return (this.#db.prepare('SELECT * FROM blobs WHERE pack = ? ORDER BY off').all(pack) as BlobRow[]).map(toLocation);
  }

  /** Calls `fn` for every stored blob location (streamed, not loaded at once). */
  forEachBlob(fn: (location: BlobLocation) => void): void {
    for (const row of this.#db.prepare('SELECT * FROM blobs').iterate() as IterableIterator<BlobRow>) fn(toLocation(row));
  }

  putBackup(manifest: Manifest): void {
    this.#db.prepare('INSERT OR REPLACE INTO backups VALUES (?, ?, ?, ?)').run(manifest.id, manifest.disk, manifest.time, JSON.stringify(manifest));
  }

  removeBackup(id: string): void {
    this.#db.prepare('DELETE FROM backups WHERE id = ?').run(id);
  }

  /** Backups oldest first, optionally of one disk. */
  backups(disk?: string): Manifest[] {
    const rows = (disk === undefined
      ? this.#db.prepare('SELECT manifest FROM backups ORDER BY time, id').all()
      : this.#db.prepare('SELECT manifest FROM backups WHERE disk = ? ORDER BY time, id').all(disk)) as { manifest: string }[];
    return rows.map((r) => JSON.parse(r.manifest) as Manifest);
  }

  backupIds(): Set<string> {
    return new Set((this.#db.prepare('SELECT id FROM backups').all() as { id: string }[]).map((r) => r.id));
  }

  page(id: Buffer): Buffer | undefined {
    return (this.#db.prepare('SELECT data FROM pages WHERE id = ?').get(id) as { data: Buffer } | undefined)?.data;
  }

  putPage(id: Buffer, data: Buffer): void {
    this.#db.prepare('INSERT OR IGNORE INTO pages VALUES (?, ?)').run(id, data);
  }

  /** Forgets everything (rebuild-catalog). */
  clear(): void {
    this.#db.exec('DELETE FROM backups; DELETE FROM packs; DELETE FROM blobs; DELETE FROM pages;');
  }
}

function toLocation(r: BlobRow): BlobLocation {
  return { id: r.id, pack: r.pack, type: r.type, flags: r.flags, offset: r.off, storedLength: r.stored, rawLength: r.raw, crc: r.crc };
}
