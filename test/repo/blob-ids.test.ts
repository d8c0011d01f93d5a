// Blob ids: plain BLAKE3 of the plaintext in an unencrypted repository; in an encrypted one the
// BLAKE3 keyed with the repository's id key, for every call (the codec reuses one keyed hasher),
// so an id never reveals which content a repository holds.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { blake3, Blake3Hasher } from '@napi-rs/blake-hash';
import { BlobCodec } from '../../src/repo/blob-codec.js';
import { generateMasterKey } from '../../src/repo/keys.js';

test('unencrypted ids are the BLAKE3 of the plaintext', () => {
  const codec = new BlobCodec(null, 1);
  const plain = randomBytes(64 * 1024);
  assert.deepEqual(codec.idOf(plain), blake3(plain));
});

test('encrypted ids are keyed BLAKE3, call after call, and differ between keys', () => {
  const key = generateMasterKey();
  const codec = new BlobCodec(key, 1);
  const other = new BlobCodec(generateMasterKey(), 1);
  const blobs = [randomBytes(64 * 1024), Buffer.alloc(0), randomBytes(5), randomBytes(64 * 1024)];
  for (let round = 0; round < 2; round++) {
    for (const plain of blobs) {
      const id = codec.idOf(plain);
      assert.deepEqual(id, Blake3Hasher.newKeyed(key.idKey).update(plain).digestBuffer());
      assert.notDeepEqual(id, blake3(plain));
      assert.notDeepEqual(id, other.idOf(plain));
    }
  }
});
