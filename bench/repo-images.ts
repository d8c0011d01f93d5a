// Images for the repository benchmark: ¼ random, ¼ compressible text, ½ holes (a sparse file,
// never written), plus "1 % rewritten in scattered 4 KiB blocks" for incrementals and clones.

import { randomBytes, randomFillSync, randomInt } from 'node:crypto';
import { open } from 'node:fs/promises';

const MIB = 2 ** 20;
const WORDS = 'the of and to in is was for on that with as by at from this are be or an it not which have has had were but all their one more also new other been two there when its first would after into can only some time these may over most such between used years many could'.split(' ');

/** 8 MiB of words drawn at random from a small vocabulary: zstd level 1 packs 64 KiB of it ~3×. */
function textPool(): Buffer {
  const pool = Buffer.alloc(8 * MIB);
  const picks = randomBytes(pool.length);
  let at = 0;
  for (let i = 0; at < pool.length; i++) {
    const word = WORDS[picks[i]! % WORDS.length]!;
    at += pool.write(word, at, 'latin1');
    if (at < pool.length) pool[at++] = picks[i]! < 16 ? 0x0a : 0x20;
  }
  return pool;
}

/** Fills `buf` with spliced runs of the pool at random offsets: compressible, never repeating. */
function fillText(buf: Buffer, pool: Buffer): void {
  const lengths = randomBytes(buf.length / 64);
  let n = 0;
  for (let at = 0; at < buf.length; ) {
    const length = Math.min(buf.length - at, 64 + lengths[n++ % lengths.length]! * 2);
    const from = randomInt(pool.length - length);
    pool.copy(buf, at, from, from + length);
    at += length;
  }
}

/** Writes the benchmark image: [0, size/4) random, [size/4, size/2) text, [size/2, size) holes. */
export async function makeBenchImage(path: string, size: number): Promise<void> {
  const pool = textPool();
  const file = await open(path, 'w');
  const block = Buffer.alloc(4 * MIB);
  try {
    await file.truncate(size);
    const quarter = size / 4;
    for (let offset = 0; offset < 2 * quarter; offset += block.length) {
      const length = Math.min(block.length, 2 * quarter - offset);
      if (offset < quarter) randomFillSync(block);
      else fillText(block, pool);
      await file.write(block, 0, length, offset);
    }
  } finally {
    await file.close();
  }
}

/** Overwrites `fraction` of the image in random 4 KiB-aligned blocks of random bytes. */
export async function scatterWrites(path: string, size: number, fraction: number): Promise<number> {
  const blocks = Math.round((size * fraction) / 4096);
  const file = await open(path, 'r+');
  const data = randomBytes(4096 * 256);
  try {
    for (let i = 0; i < blocks; i++) {
      const at = (i % 256) * 4096;
      if (at === 0) randomFillSync(data);
      await file.write(data, at, 4096, randomInt(size / 4096) * 4096);
    }
  } finally {
    await file.close();
  }
  return blocks;
}
