// Blob sealing: the addon's AES-256-GCM (native/gcm.c) and node:crypto write the same format, so
// either opens what the other sealed (repositories sealed before the addon did it still read);
// in-place sealing and opening give the same bytes; any flipped byte, another id or another type
// fails authentication; bad arguments are refused before any byte is touched.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { loadNative } from '../../src/core/native.js';
import { createBlobCipher, NodeCipher, SEAL_OVERHEAD, type BlobCipher } from '../../src/repo/gcm.js';

const key = randomBytes(32);
const id = randomBytes(32);
const ciphers: Record<string, BlobCipher> = { native: createBlobCipher(key), node: new NodeCipher(key) };

function sealWith(cipher: BlobCipher, plain: Buffer, type = 0): Buffer {
  const out = Buffer.alloc(plain.length + SEAL_OVERHEAD + 100, 0xee);
  const length = cipher.seal(id, type, plain, out);
  assert.equal(length, plain.length + SEAL_OVERHEAD);
  assert.ok(out.subarray(length).every((b) => b === 0xee), 'nothing written past the sealed blob');
  return out.subarray(0, length);
}

test('gcm: native and node:crypto open what the other sealed, in place or not', () => {
  assert.notEqual(ciphers.native!.constructor, NodeCipher, 'the addon cipher is the one under test');
  for (const size of [0, 1, 4095, 65536, 65536 + 7]) {
    const plain = randomBytes(size);
    for (const [sealer, sealing] of Object.entries(ciphers)) {
      const sealed = sealWith(sealing, plain, 1);
      assert.ok(!sealed.subarray(12, 12 + size).equals(plain) || size === 0, `${sealer}: body is encrypted`);
      for (const [opener, opening] of Object.entries(ciphers)) {
        const out = Buffer.alloc(size);
        assert.equal(opening.open(id, 1, sealed, out), true, `${sealer} -> ${opener}, ${size} bytes`);
        assert.ok(out.equals(plain), `${sealer} -> ${opener}: plaintext back, ${size} bytes`);
      }
      // In place: the body decrypts over itself.
      const copy = Buffer.from(sealed);
      assert.equal(ciphers.native!.open(id, 1, copy, copy.subarray(12)), true);
      assert.ok(copy.subarray(12, 12 + size).equals(plain), `${sealer}: opened in place`);
    }
    // Sealed in place from out[12, ...): opens to the same plaintext.
    const buffer = Buffer.alloc(size + SEAL_OVERHEAD);
    plain.copy(buffer, 12);
    assert.equal(ciphers.native!.seal(id, 1, buffer.subarray(12, 12 + size), buffer), size + SEAL_OVERHEAD);
    const out = Buffer.alloc(size);
    assert.equal(ciphers.node!.open(id, 1, buffer, out), true);
    assert.ok(out.equals(plain), `sealed in place, ${size} bytes`);
  }
});

test('gcm: nonces differ per seal; a flipped byte, another id or another type fails authentication', () => {
  const plain = randomBytes(3000);
  const a = sealWith(ciphers.native!, plain);
  const b = sealWith(ciphers.native!, plain);
  assert.ok(!a.subarray(0, 12).equals(b.subarray(0, 12)), 'random nonce per blob');
  for (const [name, cipher] of Object.entries(ciphers)) {
    const out = Buffer.alloc(plain.length);
    for (const at of [0, 11, 12, 12 + 1500, a.length - 17, a.length - 16, a.length - 1]) {
      const damaged = Buffer.from(a);
      damaged[at]! ^= 0x01;
      assert.equal(cipher.open(id, 0, damaged, out), false, `${name}: byte ${at} flipped`);
    }
    assert.equal(cipher.open(randomBytes(32), 0, a, out), false, `${name}: another id`);
    assert.equal(cipher.open(id, 2, a, out), false, `${name}: another type`);
    assert.equal(new NodeCipher(randomBytes(32)).open(id, 0, a, out), false, `${name}: another key`);
    assert.equal(createBlobCipher(randomBytes(32)).open(id, 0, a, out), false, `${name}: another key (native)`);
    assert.equal(cipher.open(id, 0, a, out), true, `${name}: the undamaged blob still opens`);
  }
});

test('gcm: bad arguments are refused with a TypeError', () => {
  const native = loadNative();
  const gcm = native.gcmCreate(key);
  const plain = Buffer.alloc(100);
  assert.throws(() => native.gcmCreate(Buffer.alloc(16)), /key must be 32 bytes/);
  assert.throws(() => native.gcmSeal(gcm, Buffer.alloc(31), 0, plain, Buffer.alloc(200)), /id must be 32 bytes/);
  assert.throws(() => native.gcmSeal(gcm, id, 256, plain, Buffer.alloc(200)), RangeError);
  assert.throws(() => native.gcmSeal(gcm, id, 0, plain, Buffer.alloc(127)), /out holds 127 bytes/);
  const shared = Buffer.alloc(300);
  assert.throws(() => native.gcmSeal(gcm, id, 0, shared.subarray(20, 120), shared), /overlaps/);
  assert.throws(() => native.gcmOpen(gcm, id, 0, Buffer.alloc(27), Buffer.alloc(10)), /28 bytes or more/);
  assert.throws(() => native.gcmOpen(gcm, id, 0, Buffer.alloc(128), Buffer.alloc(99)), /needs 100/);
  assert.throws(() => native.gcmOpen(gcm, id, 0, shared.subarray(0, 128), shared.subarray(13)), /overlaps/);
  const writer = native.createWriter(() => {});
  try {
    assert.throws(() => native.gcmSeal(writer as never, id, 0, plain, Buffer.alloc(200)), /not a gcm handle/);
  } finally {
    native.writerClose(writer);
  }
});
