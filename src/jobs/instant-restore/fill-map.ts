// The persisted fill map of a resumable instant restore: one bit per overlay block, set when the
// block's bytes in the local image are durable. Saved as temp file → fsync → rename → fsync dir,
// with a checksum, so a reader sees the old map or the new one, never a torn one.

import { createHash } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FleeceError } from '../../core/errors.js';
import { syncDir } from '../../core/sync-dir.js';

const MAGIC = Buffer.from('FLEEFIL1');
const HEADER = MAGIC.length + 4 + 8; // magic, granularity u32, block count u64
const DIGEST = 32;

export class FillMapError extends FleeceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EFILLMAP', message, options);
  }
}

/** Bytes of a map: `blocks` is 1 per block (0 or 1). */
export function encodeFillMap(blocks: Uint8Array, granularity: number): Buffer {
  const bits = Buffer.alloc(Math.ceil(blocks.length / 8));
  for (let i = 0; i < blocks.length; i++) if (blocks[i]) bits[i >> 3]! |= 1 << (i & 7);
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(granularity, MAGIC.length);
  header.writeBigUInt64LE(BigInt(blocks.length), MAGIC.length + 4);
  const body = Buffer.concat([header, bits]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** Parses a map, checking its checksum and that it describes `blockCount` blocks of `granularity`. */
export function decodeFillMap(bytes: Buffer, granularity: number, blockCount: number, where = 'fill map'): Uint8Array {
  if (bytes.length < HEADER + DIGEST || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new FillMapError(`${where}: not a fill map`);
  const body = bytes.subarray(0, bytes.length - DIGEST);
  if (!createHash('sha256').update(body).digest().equals(bytes.subarray(bytes.length - DIGEST))) throw new FillMapError(`${where}: checksum mismatch`);
  const g = body.readUInt32LE(MAGIC.length);
  const count = Number(body.readBigUInt64LE(MAGIC.length + 4));
  if (g !== granularity || count !== blockCount) throw new FillMapError(`${where}: describes ${count} blocks of ${g} bytes, expected ${blockCount} of ${granularity}`);
  if (body.length !== HEADER + Math.ceil(count / 8)) throw new FillMapError(`${where}: ${body.length - HEADER} bytes of bits for ${count} blocks`);
  const blocks = new Uint8Array(count);
  for (let i = 0; i < count; i++) blocks[i] = (body[HEADER + (i >> 3)]! >> (i & 7)) & 1;
  return blocks;
}

/** Writes the map durably and atomically (the caller made the blocks it marks durable first). */
export async function saveFillMap(path: string, blocks: Uint8Array, granularity: number): Promise<void> {
  const temp = `${path}.tmp`;
  const file = await open(temp, 'w', 0o600);
  try {
    await file.writeFile(encodeFillMap(blocks, granularity));
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
  await syncDir(dirname(path));
}

/** The saved map, or undefined when there is none yet (nothing is local). */
export async function loadFillMap(path: string, granularity: number, blockCount: number): Promise<Uint8Array | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return decodeFillMap(bytes, granularity, blockCount, `fill map '${path}'`);
}
