// Catalog sync reads each new pack's own trailer (there is no separate index object): one ranged
// GET per pack when the trailer fits in the tail read, two when it is longer; damage is reported.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { BlobType } from '../../src/repo/blob-codec.js';
import { packKey, TRAILER_TAIL_BYTES } from '../../src/repo/pack-format.js';
import { Repository } from '../../src/repo/repository.js';
import { CountingStore } from '../../src/repo/stores/counting-store.js';
import { MemoryStore } from '../../src/repo/stores/memory-store.js';

/** Writes one pack of `count` random blobs of `size` bytes; returns its id and the plaintexts by hex id. */
async function writePack(repo: Repository, count: number, size: number): Promise<{ pack: string; plain: Map<string, Buffer> }> {
  const packs: string[] = [];
  const plain = new Map<string, Buffer>();
  const writer = repo.newPackWriter();
  for (let i = 0; i < count; i++) {
    const bytes = randomBytes(size);
    const id = repo.codec.idOf(bytes);
    plain.set(id.toString('hex'), bytes);
    await writer.add(id, BlobType.chunk, repo.codec.seal(BlobType.chunk, id, bytes));
  }
  await writer.flush();
  for (const [id] of repo.catalog.packs()) packs.push(id);
  const pack = packs.find((p) => repo.catalog.packEntries(p).some((e) => plain.has(e.id.toString('hex'))))!;
  return { pack, plain };
}

test('a fresh catalog indexes packs from their trailers: one ranged GET each, two for a long trailer', async () => {
  const memory = new MemoryStore();
  const counting = new CountingStore(memory);
  const repo = await Repository.init(counting, { packSize: 64 * 2 ** 20 });
  const small = await writePack(repo, 3, 1000); // whole pack < tail read
  const big = await writePack(repo, 40, 16 * 1024); // pack > tail read, short trailer
  const many = await writePack(repo, 6000, 8); // trailer of 6000 × 52 bytes > tail read
  repo.close();
  const keys: string[] = [];
  for await (const { key } of memory.list('')) keys.push(key);
  assert.deepEqual(keys.filter((k) => !k.startsWith('packs/')), ['config'], 'a pack is one object: no index objects');
  assert.equal(keys.length, 4);
  const sizes = new Map<string, number>();
  for await (const { key, size } of memory.list('packs/')) sizes.set(key, size);
  assert.ok(sizes.get(packKey(small.pack))! < TRAILER_TAIL_BYTES);
  assert.ok(sizes.get(packKey(big.pack))! > TRAILER_TAIL_BYTES);
  assert.ok(6000 * 52 > TRAILER_TAIL_BYTES);

  const fresh = await Repository.open(counting);
  counting.reset();
  const report = await fresh.syncCatalog();
  assert.deepEqual(report.brokenPacks, []);
  assert.equal(report.rebuiltIndexes, 3);
  assert.deepEqual(counting.byKind, { 'get packs': 4, 'list manifests': 1, 'list packs': 1 });
  for (const { pack, plain } of [small, big, many]) {
    const entries = fresh.catalog.packEntries(pack);
    assert.equal(entries.length, plain.size);
    for (const e of [entries[0]!, entries[entries.length - 1]!]) {
      assert.ok((await fresh.readBlobAt(e)).equals(plain.get(e.id.toString('hex'))!));
    }
  }
  // A second sync finds nothing new and reads nothing.
  counting.reset();
  assert.equal((await fresh.syncCatalog()).rebuiltIndexes, 0);
  assert.deepEqual(counting.byKind, { 'list manifests': 1, 'list packs': 1 });
  fresh.close();
});

test('a pack with a damaged or truncated trailer is reported broken, the others are indexed', async () => {
  const memory = new MemoryStore();
  const repo = await Repository.init(memory);
  const good = await writePack(repo, 5, 2000);
  const flipped = await writePack(repo, 5, 2000);
  const cut = await writePack(repo, 5, 2000);
  repo.close();
  const bytes = await memory.get(packKey(flipped.pack));
  bytes[bytes.length - 16 - 52 + 40]! ^= 0x01; // a stored length inside the last entry
  await memory.put(packKey(flipped.pack), bytes);
  const whole = await memory.get(packKey(cut.pack));
  await memory.put(packKey(cut.pack), whole.subarray(0, whole.length - 10));

  const fresh = await Repository.open(memory);
  const report = await fresh.syncCatalog();
  const broken = new Map(report.brokenPacks.map((b) => [b.pack, b.error]));
  assert.deepEqual([...broken.keys()].sort(), [flipped.pack, cut.pack].sort());
  assert.match(broken.get(flipped.pack)!, /crc32 mismatch/);
  assert.match(broken.get(cut.pack)!, /bad trailer magic/);
  assert.deepEqual([...fresh.catalog.packs().keys()], [good.pack]);
  fresh.close();
});
