// The incremental-or-full decision of disk: backups, on its own: only a consistent, enabled
// checkpoint bitmap matching a backup of this disk makes an incremental, the newest such backup
// wins, and every other case is full with a reason.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Manifest } from '../../src/repo/manifest.js';
import { planDiskBackup, type DiskBitmapInfo } from '../../src/jobs/sources/disk-plan.js';
import { isStaleBackupSnapshot } from '../../src/jobs/sources/disk-names.js';

const SIZE = 64 * 2 ** 20;
const CHUNK = 65536;

function manifest(id: string, checkpoint: string | null, extra: Partial<Manifest> = {}): Manifest {
  return {
    version: 1, id, disk: 'vm', size: SIZE, chunkSize: CHUNK, time: `2025-01-0${id.length}T00:00:00Z`, parent: null, tags: [], checkpoint,
    counts: { slots: 0, zeroSlots: 0, newChunks: 0, newBytes: 0, reusedChunks: 0 }, root: '', pageCount: 0, host: 'h', ...extra,
  };
}

function bitmap(checkpoint: string, extra: Partial<DiskBitmapInfo> = {}): DiskBitmapInfo {
  return { name: `fleece-backup.${checkpoint}`, granularity: CHUNK, enabled: true, inconsistent: false, ...extra };
}

const plan = (bitmaps: DiskBitmapInfo[], backups: Manifest[], parent?: Manifest) =>
  planDiskBackup({ disk: 'vm', size: SIZE, chunkSize: CHUNK, bitmaps, backups, parent });

test('incremental on the newest backup whose checkpoint bitmap exists', () => {
  const a = manifest('a', 'ca');
  const b = manifest('bb', 'cb');
  const c = manifest('ccc', 'cc'); // committed, but killed before its bitmap was kept
  const p = plan([bitmap('ca'), bitmap('cb')], [a, b, c]);
  assert.equal(p.kind, 'incremental');
  assert.equal(p.kind === 'incremental' && p.parent.id, 'bb');
  assert.equal(p.kind === 'incremental' && p.bitmap.name, 'fleece-backup.cb');
  const asked = plan([bitmap('ca'), bitmap('cb')], [a, b, c], a);
  assert.equal(asked.kind === 'incremental' && asked.parent.id, 'a', '--parent picks an older matching backup');
});

test('full, with a reason, whenever the bitmap cannot be trusted or matches nothing', () => {
  const a = manifest('a', 'ca');
  const cases: [DiskPlanArgs, RegExp][] = [
    [[[], []], /first backup of disk 'vm'/],
    [[[bitmap('ca', { inconsistent: true })], [a]], /WARNING: .*'fleece-backup\.ca' is inconsistent.*FULL/],
    [[[bitmap('ca', { enabled: false })], [a]], /WARNING: .*disabled.*FULL/],
    [[[bitmap('zz')], [a]], /no backup of disk 'vm' in this repository matches bitmap 'fleece-backup\.zz'/],
    [[[], [a]], /WARNING: disk 'vm' has no backup bitmap/],
    [[[bitmap('ca')], [manifest('a', 'ca', { size: SIZE / 2 })]], /is 67108864 bytes/],
    [[[bitmap('ca'), bitmap('cb')], [a, manifest('bb', 'cb')], manifest('ccc', null)], /--parent ccc: no bitmap tracks/],
  ];
  for (const [[bitmaps, backups, parent], reason] of cases) {
    const p = plan(bitmaps, backups, parent);
    assert.equal(p.kind, 'full');
    assert.match(p.notices.join('\n'), reason);
  }
  // A bitmap finer than the chunk size cannot make whole slots readable through the snapshot.
  const big = planDiskBackup({ disk: 'vm', size: SIZE, chunkSize: 4 * CHUNK, bitmaps: [bitmap('ca')], backups: [manifest('a', 'ca', { chunkSize: 4 * CHUNK })] });
  assert.equal(big.kind, 'full');
  assert.match(big.notices.join('\n'), /finer than the repository's chunk size/);
});

type DiskPlanArgs = [DiskBitmapInfo[], Manifest[], Manifest?];

test('stale snapshots: only those of dead jobs', () => {
  assert.equal(isStaleBackupSnapshot('fleece-backup-4194304-00ff', () => false), true);
  assert.equal(isStaleBackupSnapshot('fleece-backup-1234-00ff', () => true), false, 'a running job keeps its snapshot');
  assert.equal(isStaleBackupSnapshot(`fleece-backup-${process.pid}-00ff`, () => true), true, 'this process has none yet');
  assert.equal(isStaleBackupSnapshot('nightly', () => false), false, 'other snapshots are never touched');
});
