// The side file of a persistent dirty bitmap. Its in-use flag is set while a daemon may change
// the bits and cleared by a clean close; a file found in use at load was not saved after its last
// writes, so the bitmap is loaded as inconsistent and nothing may trust it.
//
// Layout (little-endian): "FLEEBMP1", u32 version, u32 flags (1 in-use, 2 enabled),
// u32 granularity, u32 name length, u64 size, name (padded to 4), u32 words.

import { open, rename, readFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { syncDir } from '../../core/sync-dir.js';
import { BitmapError } from './bitmap-error.js';
import { DirtyBitmap } from './dirty-bitmap.js';

const MAGIC = Buffer.from('FLEEBMP1', 'latin1');
const VERSION = 1;
const FLAG_IN_USE = 1;
const FLAG_ENABLED = 2;
const HEADER = 32;
const FLAGS_OFFSET = 12;

/** Writes the bitmap atomically (temp file, fsync, rename, fsync dir). */
export async function saveBitmap(path: string, bitmap: DirtyBitmap, options: { inUse: boolean }): Promise<void> {
  const name = Buffer.from(bitmap.name, 'utf8');
  const namePadded = Math.ceil(name.length / 4) * 4;
  const header = Buffer.alloc(HEADER + namePadded);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(VERSION, 8);
  // An inconsistent bitmap stays in use on disk until it is removed.
  const inUse = options.inUse || bitmap.inconsistent;
  header.writeUInt32LE((inUse ? FLAG_IN_USE : 0) | (bitmap.enabled ? FLAG_ENABLED : 0), FLAGS_OFFSET);
  header.writeUInt32LE(bitmap.granularity, 16);
  header.writeUInt32LE(name.length, 20);
  header.writeBigUInt64LE(BigInt(bitmap.size), 24);
  name.copy(header, HEADER);
  const words = littleEndianWords(bitmap.words);
  const temp = join(dirname(path), `.${basename(path)}.tmp`);
  const file = await open(temp, 'w');
  try {
    await file.writev([header, words]);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
  await syncDir(dirname(path));
}

/** Sets the in-use flag in place, durably, before the bitmap starts changing. */
export async function markInUse(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const flags = Buffer.alloc(4);
    await file.read(flags, 0, 4, FLAGS_OFFSET);
    flags.writeUInt32LE(flags.readUInt32LE(0) | FLAG_IN_USE, 0);
    await file.write(flags, 0, 4, FLAGS_OFFSET);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Reads a bitmap file; one found in use comes back `inconsistent`. */
export async function loadBitmap(path: string): Promise<DirtyBitmap> {
  const data = await readFile(path);
  if (data.length < HEADER || !data.subarray(0, 8).equals(MAGIC)) {
    throw new BitmapError('EBITMAP_INVALID', `'${path}' is not a fleece bitmap file`);
  }
  const version = data.readUInt32LE(8);
  if (version !== VERSION) throw new BitmapError('EBITMAP_INVALID', `bitmap file '${path}' has version ${version}, expected ${VERSION}`);
  const flags = data.readUInt32LE(FLAGS_OFFSET);
  const granularity = data.readUInt32LE(16);
  const nameLength = data.readUInt32LE(20);
  const size = Number(data.readBigUInt64LE(24));
  const wordsAt = HEADER + Math.ceil(nameLength / 4) * 4;
  if (wordsAt > data.length) throw new BitmapError('EBITMAP_INVALID', `bitmap file '${path}' is truncated`);
  const name = data.toString('utf8', HEADER, HEADER + nameLength);
  const bitmap = new DirtyBitmap(name, size, {
    granularity,
    enabled: (flags & FLAG_ENABLED) !== 0,
    inconsistent: (flags & FLAG_IN_USE) !== 0,
  });
  const count = bitmap.words.length;
  if (data.length - wordsAt !== count * 4) {
    throw new BitmapError('EBITMAP_INVALID', `bitmap file '${path}' holds ${data.length - wordsAt} bytes of bits, expected ${count * 4}`);
  }
  const words = new Uint32Array(count);
  for (let i = 0; i < count; i++) words[i] = data.readUInt32LE(wordsAt + i * 4);
  bitmap.loadWords(words);
  return bitmap;
}

function littleEndianWords(words: Uint32Array): Buffer {
  const out = Buffer.alloc(words.length * 4);
  for (let i = 0; i < words.length; i++) out.writeUInt32LE(words[i]!, i * 4);
  return out;
}
