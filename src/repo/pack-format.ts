// Byte layout of a pack object and its trailer, which is the pack's only index.
// pack = header(16) | stored blobs | trailer; trailer = entries(52 each) | footer(16).
// Little-endian throughout. A reader fetches the pack's tail once and decodes the trailer.

import { randomFillSync } from 'node:crypto';
import { ID_LENGTH } from './blob-codec.js';
import { crc32 } from './crc32.js';
import { RepoError } from './errors.js';
import { blake3, Blake3Hasher } from './native-packages.js';

export const PACK_MAGIC = Buffer.from('FLEECEPK');
export const PACK_HEADER_SIZE = 16;
export const ENTRY_SIZE = 52;
export const FOOTER_SIZE = 16;
const FOOTER_MAGIC = Buffer.from('FLPKIDX1');
/** Cap on entries a trailer may claim, so a damaged count cannot make us allocate gigabytes. */
const MAX_ENTRIES = 1 << 22;
/**
 * How much of a pack's end one read fetches to find its trailer: a 32 MiB pack of 64 KiB chunks
 * has a 26 KiB trailer, so one ranged GET usually holds all of it (a second one reads the rest).
 */
export const TRAILER_TAIL_BYTES = 256 * 1024;

export interface PackEntry {
  readonly id: Buffer;
  readonly type: number;
  readonly flags: number;
  /** Byte offset of the stored blob inside the pack. */
  readonly offset: number;
  readonly storedLength: number;
  readonly rawLength: number;
  readonly crc: number;
}

/**
 * A fresh pack header. Bytes 9..15 are random so that two packs with the same blobs never share
 * an id: otherwise a backup could "re-create" a pack gc has condemned (put-if-absent keeps the
 * old object) and a later gc would delete the pack under the new backup's feet.
 */
export function packHeader(): Buffer {
  const header = Buffer.alloc(PACK_HEADER_SIZE);
  PACK_MAGIC.copy(header, 0);
  header.writeUInt8(1, 8); // pack format version
  randomFillSync(header, 9, PACK_HEADER_SIZE - 9);
  return header;
}

/**
 * A pack's id: BLAKE3 of its header and trailer. The trailer names every blob (its content
 * hash) and holds the CRC32 of its stored bytes, and the header's nonce makes the id unique, so
 * hashing the blob bytes once more would add nothing the per-blob checks lack, at the cost of
 * a BLAKE3 pass over every stored byte (~8 % of a backup's CPU).
 */
export function packIdOf(header: Uint8Array, trailer: Uint8Array): string {
  return new Blake3Hasher().update(header).update(trailer).digestBuffer().toString('hex');
}

/**
 * Whether a whole pack's bytes match its id: header and trailer, or (packs written before the
 * id covered only those) all of its bytes.
 */
export function packMatchesId(pack: Buffer, id: string): boolean {
  if (pack.length >= PACK_HEADER_SIZE + FOOTER_SIZE) {
    try {
      const length = trailerLength(pack.subarray(pack.length - FOOTER_SIZE), 'pack');
      if (length <= pack.length - PACK_HEADER_SIZE && packIdOf(pack.subarray(0, PACK_HEADER_SIZE), pack.subarray(pack.length - length)) === id) return true;
    } catch {
      // a damaged footer: only the whole-pack hash can still match
    }
  }
  return blake3(pack).toString('hex') === id;
}

export function packKey(packId: string): string {
  return `packs/${packId.slice(0, 2)}/${packId}`;
}

export function encodeTrailer(entries: readonly PackEntry[]): Buffer {
  const out = Buffer.alloc(entries.length * ENTRY_SIZE + FOOTER_SIZE);
  entries.forEach((e, i) => {
    const at = i * ENTRY_SIZE;
    e.id.copy(out, at);
    out.writeUInt8(e.type, at + 32);
    out.writeUInt8(e.flags, at + 33);
    out.writeUInt32LE(e.offset, at + 36);
    out.writeUInt32LE(e.storedLength, at + 40);
    out.writeUInt32LE(e.rawLength, at + 44);
    out.writeUInt32LE(e.crc, at + 48);
  });
  const footer = entries.length * ENTRY_SIZE;
  out.writeUInt32LE(entries.length, footer);
  out.writeUInt32LE(crc32(out.subarray(0, footer)), footer + 4);
  FOOTER_MAGIC.copy(out, footer + 8);
  return out;
}

/** Reads the footer (last 16 bytes of a pack or index object): how long the trailer is. */
export function trailerLength(footer: Buffer, what: string): number {
  if (footer.length !== FOOTER_SIZE || !footer.subarray(8).equals(FOOTER_MAGIC)) {
    throw new RepoError('ECORRUPT', `${what}: bad trailer magic`);
  }
  const count = footer.readUInt32LE(0);
  if (count > MAX_ENTRIES) throw new RepoError('ECORRUPT', `${what}: impossible entry count ${count}`);
  return count * ENTRY_SIZE + FOOTER_SIZE;
}

export function decodeTrailer(bytes: Buffer, what: string): PackEntry[] {
  if (bytes.length < FOOTER_SIZE) throw new RepoError('ECORRUPT', `${what}: trailer truncated (${bytes.length} bytes)`);
  const length = trailerLength(bytes.subarray(bytes.length - FOOTER_SIZE), what);
  if (bytes.length !== length) throw new RepoError('ECORRUPT', `${what}: trailer is ${bytes.length} bytes, expected ${length}`);
  const footer = length - FOOTER_SIZE;
  if (crc32(bytes.subarray(0, footer)) !== bytes.readUInt32LE(footer + 4)) throw new RepoError('ECORRUPT', `${what}: trailer crc32 mismatch`);
  const entries: PackEntry[] = [];
  for (let at = 0; at < footer; at += ENTRY_SIZE) {
    entries.push({
      id: Buffer.from(bytes.subarray(at, at + ID_LENGTH)),
      type: bytes.readUInt8(at + 32),
      flags: bytes.readUInt8(at + 33),
      offset: bytes.readUInt32LE(at + 36),
      storedLength: bytes.readUInt32LE(at + 40),
      rawLength: bytes.readUInt32LE(at + 44),
      crc: bytes.readUInt32LE(at + 48),
    });
  }
  return entries;
}
