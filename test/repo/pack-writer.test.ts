// Pack ids must be unique even for identical contents: gc's condemned-pack safety relies on a
// backup never re-creating (and so adopting) a pack that gc has condemned.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { BlobCodec, BlobType } from '../../src/repo/blob-codec.js';
import { decodeTrailer, packKey } from '../../src/repo/pack-format.js';
import { PackWriter } from '../../src/repo/pack-writer.js';
import { MemoryStore } from '../../src/repo/stores/memory-store.js';

test('two packs of the same blobs get different ids and both decode', async () => {
  const store = new MemoryStore();
  const codec = new BlobCodec(null, 1);
  const plain = randomBytes(64 * 1024);
  const id = codec.idOf(plain);
  const packs: string[] = [];
  for (let i = 0; i < 2; i++) {
    const writer = new PackWriter(store, 1 << 20, (packId) => packs.push(packId));
    await writer.add(id, BlobType.chunk, codec.seal(BlobType.chunk, id, plain));
    await writer.flush();
  }
  assert.equal(packs.length, 2);
  assert.notEqual(packs[0], packs[1]);
  for (const pack of packs) {
    const bytes = await store.get(packKey(pack));
    const entries = decodeTrailer(bytes.subarray(bytes.length - 52 - 16), pack);
    assert.equal(entries.length, 1);
    assert.ok(entries[0]!.id.equals(id));
    const stored = bytes.subarray(entries[0]!.offset, entries[0]!.offset + entries[0]!.storedLength);
    assert.ok(codec.open({ id, type: BlobType.chunk, flags: entries[0]!.flags, rawLength: entries[0]!.rawLength, crc: entries[0]!.crc }, stored, pack).equals(plain));
  }
});
