// waitForGc polls only gc leases: backups waiting for a gc cost one list and one GET per live gc
// lease each poll, however many backup leases the repository holds.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitForGc } from '../../src/repo/condemned.js';
import { Lease, readLeases } from '../../src/repo/leases.js';
import { CountingStore } from '../../src/repo/stores/counting-store.js';
import { MemoryStore } from '../../src/repo/stores/memory-store.js';

test('waitForGc reads gc leases only, and returns once the gc lease is released', async () => {
  const store = new CountingStore(new MemoryStore());
  const backups = await Promise.all(Array.from({ length: 8 }, () => Lease.acquire(store, 'backup', { ttlMs: 60_000 })));
  const gc = await Lease.acquire(store, 'gc', { ttlMs: 60_000 });
  try {
    assert.deepEqual((await readLeases(store, { kind: 'gc' })).map((l) => l.key), [gc.key]);
    assert.equal((await readLeases(store, { kind: 'backup' })).length, 8);
    assert.equal((await readLeases(store)).length, 9);
    store.reset();
    let returned = false;
    const waiting = waitForGc(store, { timeoutMs: 10_000 }).then(() => (returned = true));
    await new Promise((resolve) => setTimeout(resolve, 350));
    assert.equal(returned, false, 'waits while the gc lease is live');
    await gc.release();
    await waiting;
    const kinds = store.byKind;
    const polls = kinds['list leases']!;
    assert.ok(polls >= 3, `polled ${polls} times`);
    // One GET per poll that found the gc lease; the eight backup leases are never read.
    assert.equal(kinds['get leases'], polls - 1);
  } finally {
    await gc.release();
    await Promise.all(backups.map((b) => b.release()));
  }
});

test('waitForGc ignores a dead gc lease and times out on a live one quoting it', async () => {
  const store = new MemoryStore();
  await store.put('leases/gc-dead-1', Buffer.from(JSON.stringify({ kind: 'gc', host: 'h', pid: 1, startedAt: 0, refreshedAt: 0 })));
  await waitForGc(store, { timeoutMs: 1000 });
  const gc = await Lease.acquire(store, 'gc', { ttlMs: 60_000 });
  try {
    await assert.rejects(waitForGc(store, { timeoutMs: 150 }), (err: unknown) => (err as { code?: string }).code === 'ELOCKED' && (err as Error).message.includes(gc.key));
  } finally {
    await gc.release();
  }
});
