// Packs built inside chunk workers: the id is the BLAKE3 of header and trailer, the trailer lists every blob, and every blob opens to its plaintext, plain or sealed,
// compressible or not; a blob too large for the room left closes the pack early.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { blake3 } from '@napi-rs/blake-hash';
import { loadNative } from '../../src/core/native.js';
import { BlobCodec, BlobType, FLAG_ZSTD } from '../../src/repo/blob-codec.js';
import { generateMasterKey } from '../../src/repo/keys.js';
import { PackAssembler, type AssembledPack } from '../../src/repo/pack-assembler.js';
import { decodeTrailer, PACK_HEADER_SIZE, PACK_MAGIC, packMatchesId } from '../../src/repo/pack-format.js';

function text(length: number): Buffer {
  const words = ['alpha ', 'beta ', 'gamma ', 'delta '];
  let s = '';
  while (s.length < length) s += words[Math.floor(Math.random() * words.length)];
  return Buffer.from(s.slice(0, length));
}

for (const encrypted of [false, true]) {
  test(`assembled packs decode and every blob opens (${encrypted ? 'encrypted' : 'plain'})`, () => {
    const key = encrypted ? generateMasterKey() : null;
    const codec = new BlobCodec(key, 1);
    const assembler = new PackAssembler(codec, 256 * 1024);
    const finished: AssembledPack[] = [];
    const blobs = new Map<string, Buffer>();
    let compressed = 0;
    for (let i = 0; i < 40; i++) {
      const plain = i % 2 === 0 ? randomBytes(16 * 1024) : text(16 * 1024 + i);
      const id = codec.idOf(plain);
      blobs.set(id.toString('hex'), plain);
      assembler.add(id, BlobType.chunk, plain, finished);
    }
    // Larger than a whole pack's room: closes the open pack first.
    const big = text(2 * 1024 * 1024);
    const bigId = codec.idOf(big);
    blobs.set(bigId.toString('hex'), big);
    const before = finished.length;
    assembler.add(bigId, BlobType.root, big, finished);
    assert.ok(finished.length > before, 'the open pack was closed before the large blob');
    const last = assembler.finish();
    if (last) finished.push(last);
    assert.equal(assembler.finish(), undefined);

    const seen = new Set<string>();
    for (const pack of finished) {
      const bytes = Buffer.from(pack.buf, pack.offset, pack.length);
      // A page boundary lets the local store write the pack with O_DIRECT straight from the buffer.
      assert.equal(loadNative().pageOffset(bytes) % 4096, 0, 'pack starts at a page boundary');
      assert.ok(bytes.subarray(0, 8).equals(PACK_MAGIC));
      const header = bytes.subarray(0, PACK_HEADER_SIZE);
      const trailer = bytes.subarray(pack.trailerAt);
      assert.equal(blake3(Buffer.concat([header, trailer])).toString('hex'), pack.id);
      assert.ok(packMatchesId(bytes, pack.id));
      const entries = decodeTrailer(bytes.subarray(pack.trailerAt), pack.id);
      for (const e of entries) {
        const plain = codec.open(e, bytes.subarray(e.offset, e.offset + e.storedLength), pack.id);
        const hex = e.id.toString('hex');
        assert.ok(plain.equals(blobs.get(hex)!));
        if (e.flags & FLAG_ZSTD) compressed++;
        seen.add(hex);
      }
    }
    assert.equal(seen.size, blobs.size);
    assert.ok(compressed >= 20, `text blobs are stored compressed (${compressed})`);
  });
}

test('a pack matches its id until its header or trailer changes; whole-pack ids still match', () => {
  const codec = new BlobCodec(null, 1);
  const assembler = new PackAssembler(codec, 1024 * 1024);
  const finished: AssembledPack[] = [];
  for (let i = 0; i < 4; i++) {
    const plain = randomBytes(8192);
    assembler.add(codec.idOf(plain), BlobType.chunk, plain, finished);
  }
  const pack = assembler.finish()!;
  const bytes = Buffer.from(Buffer.from(pack.buf, pack.offset, pack.length));
  assert.ok(packMatchesId(bytes, pack.id));
  for (const at of [12, pack.trailerAt + 40, pack.length - 20]) {
    const damaged = Buffer.from(bytes);
    damaged[at]! ^= 1;
    assert.equal(packMatchesId(damaged, pack.id), false, `byte ${at} flipped`);
  }
  // Packs written when the id hashed every byte.
  assert.ok(packMatchesId(bytes, blake3(bytes).toString('hex')));
  assert.equal(packMatchesId(bytes.subarray(0, 10), pack.id), false);
});
