// A repository: a Store holding config, packs (each indexed by its own trailer), manifests and
// leases, plus the master key and a catalog derived from them. Engines (backup, restore, gc, verify...) are
// separate files that take a Repository; this file opens, unlocks, syncs and reads.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { BlobCodec, typeName } from './blob-codec.js';
import { Catalog, type BlobLocation } from './catalog.js';
import { checkChunkSize, CONFIG_KEY, decodeConfig, DEFAULT_CHUNK_SIZE, DEFAULT_PACK_SIZE, encodeConfig, FORMAT_VERSION, type RepoConfig } from './config.js';
import { RepoError, isNotFound } from './errors.js';
import { decodeRoot } from './index-format.js';
import { createKeySlot, generateMasterKey, openMasterKey, type MasterKey, type Secret } from './keys.js';
import { decodeManifest, encodeManifest, manifestKey, type Manifest } from './manifest.js';
import { decodeTrailer, FOOTER_SIZE, PACK_HEADER_SIZE, packKey, TRAILER_TAIL_BYTES, trailerLength, type PackEntry } from './pack-format.js';
import { PackWriter } from './pack-writer.js';
import { runBounded } from './run-bounded.js';
import type { Store } from './store.js';

export interface OpenOptions {
  readonly secret?: Secret;
  /** SQLite file for the catalog; ':memory:' (the default) rebuilds it on every open. */
  readonly catalogPath?: string;
  readonly signal?: AbortSignal;
}

export interface InitOptions extends OpenOptions {
  readonly chunkSize?: number;
  readonly packSize?: number;
  readonly encrypt?: boolean;
  readonly compressionLevel?: number;
}

/** What a catalog sync did: packs whose trailer could not be read, packs newly indexed. */
export interface SyncReport {
  readonly brokenPacks: { readonly pack: string; readonly error: string }[];
  /** Packs added to the catalog by reading their trailers in this sync. */
  readonly rebuiltIndexes: number;
}

/** Trailer reads in flight during a catalog sync (each is one small ranged GET). */
const TRAILER_READS = 8;

export class Repository {
  readonly store: Store;
  readonly config: RepoConfig;
  readonly codec: BlobCodec;
  readonly catalog: Catalog;
  readonly masterKey: MasterKey | null;

  private constructor(store: Store, config: RepoConfig, key: MasterKey | null, catalog: Catalog) {
    this.store = store;
    this.config = config;
    this.masterKey = key;
    this.codec = new BlobCodec(key, config.compression.level);
    this.catalog = catalog;
  }

  /** Creates a repository in an empty store; EEXIST if one is there already. */
  static async init(store: Store, options: InitOptions = {}): Promise<Repository> {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    checkChunkSize(chunkSize);
    let encryption: RepoConfig['encryption'] = null;
    if (options.encrypt) {
      if (options.secret?.passphrase === undefined && !options.secret?.keyFile) {
        throw new RepoError('EINVALID', 'an encrypted repository needs a passphrase or a key file');
      }
      encryption = { cipher: 'aes-256-gcm', idHash: 'blake3-keyed', keys: [createKeySlot(generateMasterKey(), options.secret)] };
    }
    const config: RepoConfig = {
      version: FORMAT_VERSION,
      id: randomBytes(16).toString('hex'),
      createdAt: new Date().toISOString(),
      chunkSize,
      packSize: options.packSize ?? DEFAULT_PACK_SIZE,
      compression: { algorithm: 'zstd', level: options.compressionLevel ?? 1 },
      encryption,
    };
    const { written } = await store.put(CONFIG_KEY, encodeConfig(config), { ifAbsent: true, signal: options.signal });
    if (!written) throw new RepoError('EEXIST', 'a repository already exists at this location');
    return Repository.open(store, options);
  }

  /** Opens and unlocks a repository; ENOREPO when there is none, EBADKEY for a wrong secret. */
  static async open(store: Store, options: OpenOptions = {}): Promise<Repository> {
    let bytes: Buffer;
    try {
      bytes = await store.get(CONFIG_KEY, { signal: options.signal });
    } catch (err) {
      if (isNotFound(err)) throw new RepoError('ENOREPO', 'no repository here (no config object): run `fleece init` first', { cause: err });
      throw err;
    }
    const config = decodeConfig(bytes);
    const key = config.encryption ? openMasterKey(config.encryption.keys, options.secret ?? {}) : null;
    return new Repository(store, config, key, new Catalog(options.catalogPath ?? ':memory:'));
  }

  close(): void {
    this.catalog.close();
  }

  newPackWriter(): PackWriter {
    return new PackWriter(this.store, this.config.packSize, (id, size, entries) => this.catalog.addPack(id, size, entries));
  }

  /** Brings the catalog up to date with the store's manifests and packs. */
  async syncCatalog(options: { signal?: AbortSignal } = {}): Promise<SyncReport> {
    const { signal } = options;
    const known = this.catalog.backupIds();
    const present = new Set<string>();
    for await (const { key } of this.store.list('manifests/', { signal })) {
      const id = key.slice('manifests/'.length);
      present.add(id);
      if (known.has(id)) continue;
      try {
        this.catalog.putBackup(await this.readManifest(id, { signal }));
      } catch (err) {
        if (!isNotFound(err)) throw err; // deleted meanwhile
      }
    }
    for (const id of known) if (!present.has(id)) this.catalog.removeBackup(id);

    const packs = new Map<string, number>();
    for await (const { key, size } of this.store.list('packs/', { signal })) packs.set(key.slice(key.lastIndexOf('/') + 1), size);
    const cataloged = this.catalog.packs();
    for (const id of cataloged.keys()) if (!packs.has(id)) this.catalog.removePack(id);
    const report = { brokenPacks: [] as { pack: string; error: string }[], rebuiltIndexes: 0 };
    const fresh = [...packs].filter(([id]) => !cataloged.has(id));
    await runBounded(fresh, async (id, size) => {
      let entries: PackEntry[];
      try {
        entries = await this.readPackTrailer(id, size, { signal });
      } catch (err) {
        if (isNotFound(err)) return; // deleted by a gc meanwhile
        if (!(err instanceof RepoError)) throw err;
        report.brokenPacks.push({ pack: id, error: err.message });
        return;
      }
      this.catalog.addPack(id, size, entries);
      report.rebuiltIndexes++;
    }, TRAILER_READS, signal);
    return report;
  }

  /**
   * A pack's trailer bytes: one ranged GET of the pack's last TRAILER_TAIL_BYTES (or all of a
   * smaller pack), and a second one only when the trailer is longer than that.
   */
  async #trailerBytes(pack: string, size: number, signal?: AbortSignal): Promise<Buffer> {
    const what = `pack ${pack}`;
    if (size < PACK_HEADER_SIZE + FOOTER_SIZE) throw new RepoError('ECORRUPT', `${what}: truncated to ${size} bytes`);
    const tailLength = Math.min(size, TRAILER_TAIL_BYTES);
    const tail = await this.store.get(packKey(pack), { range: { offset: size - tailLength, length: tailLength }, signal });
    if (tail.length !== tailLength) throw new RepoError('ECORRUPT', `${what}: read ${tail.length} of the last ${tailLength} bytes (listed size ${size})`);
    const length = trailerLength(tail.subarray(tailLength - FOOTER_SIZE), what);
    if (length > size - PACK_HEADER_SIZE) throw new RepoError('ECORRUPT', `${what}: trailer of ${length} bytes exceeds pack size ${size}`);
    if (length <= tailLength) return tail.subarray(tailLength - length);
    const head = await this.store.get(packKey(pack), { range: { offset: size - length, length: length - tailLength }, signal });
    if (head.length !== length - tailLength) throw new RepoError('ECORRUPT', `${what}: trailer truncated (${head.length + tailLength} of ${length} bytes)`);
    return Buffer.concat([head, tail]);
  }

  /** Reads the entries of a pack from its trailer (the pack's only index); `size` from a listing or stat. */
  async readPackTrailer(pack: string, size: number, options: { signal?: AbortSignal } = {}): Promise<PackEntry[]> {
    return decodeTrailer(await this.#trailerBytes(pack, size, options.signal), `pack ${pack}`);
  }

  async readManifest(id: string, options: { signal?: AbortSignal } = {}): Promise<Manifest> {
    return decodeManifest(id, await this.store.get(manifestKey(id), options), this.masterKey);
  }

  /** Writes a manifest with put-if-absent: the commit point of a backup. */
  async writeManifest(manifest: Manifest, options: { signal?: AbortSignal } = {}): Promise<void> {
    const { written } = await this.store.put(manifestKey(manifest.id), encodeManifest(manifest, this.masterKey), { ifAbsent: true, signal: options.signal });
    if (!written) throw new RepoError('EEXIST', `backup id '${manifest.id}' already exists`);
    this.catalog.putBackup(manifest);
  }

  /** The backup whose id is `prefix` or starts with it; ENOTFOUND / EAMBIGUOUS otherwise. */
  resolveBackup(prefix: string): Manifest {
    const ids = [...this.catalog.backupIds()];
    const exact = ids.find((id) => id === prefix);
    const matches = exact ? [exact] : ids.filter((id) => id.startsWith(prefix));
    if (matches.length === 0 || prefix.length === 0) throw new RepoError('ENOTFOUND', `no backup with id '${prefix}'`);
    if (matches.length > 1) throw new RepoError('EAMBIGUOUS', `backup id prefix '${prefix}' matches ${matches.length} backups: give more characters`);
    return this.catalog.backups().find((m) => m.id === matches[0])!;
  }

  /** Deletes a backup: its manifest only, never chunk data (gc reclaims what nothing references). */
  async deleteBackup(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.store.delete(manifestKey(id), options);
    this.catalog.removeBackup(id);
  }

  /** Reads one stored blob at a known location and checks it. */
  async readBlobAt(location: BlobLocation, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const where = `pack ${location.pack.slice(0, 16)}`;
    let stored: Buffer;
    try {
      stored = await this.store.get(packKey(location.pack), { range: { offset: location.offset, length: location.storedLength }, signal: options.signal });
    } catch (err) {
      if (isNotFound(err)) throw new RepoError('ENOTFOUND', `${typeName(location.type)} ${location.id.toString('hex').slice(0, 16)}: ${where} is missing`, { cause: err });
      throw err;
    }
    if (stored.length !== location.storedLength) {
      throw new RepoError('ECORRUPT', `${typeName(location.type)} ${location.id.toString('hex').slice(0, 16)} in ${where}: truncated (${stored.length} of ${location.storedLength} bytes)`);
    }
    return this.codec.open(location, stored, where);
  }

  /** Reads a blob by id from any of its locations; the first location's error if all fail. */
  async readBlob(id: Buffer, type: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const locations = this.catalog.locate(id);
    if (locations.length === 0) throw new RepoError('ENOTFOUND', `${typeName(type)} ${id.toString('hex').slice(0, 16)}: not in any pack`);
    let first: unknown;
    for (const location of locations) {
      try {
        return await this.readBlobAt(location, options);
      } catch (err) {
        first ??= err;
      }
    }
    throw first;
  }

  /** Page ids of a backup's index, from its root blob. */
  async pageIds(manifest: Manifest, options: { signal?: AbortSignal } = {}): Promise<Buffer[]> {
    const root = await this.readBlob(Buffer.from(manifest.root, 'hex'), 2, options);
    return decodeRoot(root, manifest.pageCount, `backup ${manifest.id}`);
  }

  /** One index page (cached in the catalog: pages are immutable and content-addressed). */
  async page(id: Buffer, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const cached = this.catalog.page(id);
    if (cached) return cached;
    const page = await this.readBlob(id, 1, options);
    this.catalog.putPage(id, page);
    return page;
  }

  static newBackupId(): string {
    return randomBytes(16).toString('hex');
  }

  static host(): string {
    return hostname();
  }
}
