// `fleece restore ID TARGET` into an NBD export (qemu-nbd over a garbage-filled file, so zero
// slots must really be zeroed), into daemon disks (created, or overwritten), with --verify
// passing on good targets and failing on a tampered one and on one that drops writes (nbdkit null).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDaemon, withState } from '../live/daemon-harness.js';
import { requireTools, runOk, scratchDir } from '../helpers/tools.js';
import { fleece, startChild, startQemuNbd, waitForSocket } from './helpers.js';

const K = 1024;
const M = 1024 * K;
const CHUNK = 64 * K;

/** 6 MiB + 777 bytes: random data, whole zero chunks, a chunk with 5 bytes set, a ragged tail. */
function image(): Buffer {
  const bytes = Buffer.alloc(6 * M + 777);
  randomBytes(700 * K).copy(bytes, 0);
  randomBytes(5).copy(bytes, 2 * M + 10);
  randomBytes(1 * M).copy(bytes, 4 * M);
  randomBytes(300).copy(bytes, bytes.length - 300);
  return bytes;
}

async function setup(dir: string): Promise<{ repo: string; id: string; bytes: Buffer; source: string }> {
  const repo = join(dir, 'repo');
  const source = join(dir, 'source.img');
  const bytes = image();
  await writeFile(source, bytes);
  assert.equal((await fleece(['init', '--repo', repo, '--chunk-size', '64K'])).code, 0);
  const backup = await fleece(['backup', source, '--disk', 'vm1', '--repo', repo, '--json']);
  assert.equal(backup.code, 0, backup.stderr);
  return { repo, id: (JSON.parse(backup.stdout) as { id: string }).id, bytes, source };
}

test('restore into a qemu-nbd export: zero slots zeroed, --verify passes, a tampered block fails --verify-only', async () => {
  requireTools('qemu-nbd', 'qemu-io');
  const dir = await scratchDir();
  try {
    const { repo, id, bytes } = await setup(dir.path);
    const target = join(dir.path, 'target.img');
    await writeFile(target, Buffer.alloc(bytes.length + 1000, 0xaa)); // garbage everywhere, larger than the backup
    const socket = join(dir.path, 'q.sock');
    const nbd = await startQemuNbd(socket, ['-f', 'raw', target]);
    const uri = `nbd+unix:///?socket=${socket}`;
    try {
      const restored = await fleece(['restore', id, uri, '--repo', repo, '--verify', '--json']);
      assert.equal(restored.code, 0, restored.stderr);
      const report = JSON.parse(restored.stdout) as { dataBytes: number; zeroBytes: number; verified: { bytesChecked: number; mismatches: unknown[] } };
      assert.equal(report.dataBytes + report.zeroBytes, bytes.length);
      assert.ok(report.zeroBytes >= 2 * M, `zero runs written: ${report.zeroBytes}`);
      assert.deepEqual(report.verified, { bytesChecked: bytes.length, mismatches: [] });
      assert.match(restored.stderr, /"event":"progress","job":"restore","done":6292233,"total":6292233/);

      const written = await readFile(target);
      assert.ok(written.subarray(0, bytes.length).equals(bytes), 'target differs from the source image');
      assert.ok(written.subarray(bytes.length).every((b) => b === 0xaa), 'bytes past the backup were touched');

      // Tamper with a zero slot and a data slot through the export, then ask for a comparison only.
      await runOk('qemu-io', ['-f', 'raw', '-c', `write -P 0x55 ${3 * M + 4096} 512`, '-c', `write -P 0x55 ${4 * M + CHUNK + 1} 1`, uri]);
      const check = await fleece(['restore', id, uri, '--repo', repo, '--verify-only']);
      assert.equal(check.code, 1, check.stderr);
      assert.equal(check.stdout, `  differs: offset ${3 * M} length ${CHUNK}\n  differs: offset ${4 * M + CHUNK} length ${CHUNK}\n`);
      assert.match(check.stderr, /differs from backup .* in 2 range\(s\), the first at offset 3145728/);
      assert.ok((await readFile(target)).subarray(3 * M + 4096, 3 * M + 4608).every((b) => b === 0x55), '--verify-only wrote');

      const again = await fleece(['restore', id, uri, '--repo', repo, '--verify']);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /identical to the backup/);
      assert.ok((await readFile(target)).subarray(0, bytes.length).equals(bytes));
    } finally {
      await nbd.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

test('restore --verify fails on a target that drops writes; read-only and too small exports are refused', async () => {
  requireTools('nbdkit');
  const dir = await scratchDir();
  try {
    const { repo, id, bytes } = await setup(dir.path);
    const serve = async (name: string, args: string[]): Promise<{ uri: string; stop: () => Promise<void> }> => {
      const socket = join(dir.path, `${name}.sock`);
      const child = startChild('nbdkit', ['-f', '-U', socket, ...args]);
      await waitForSocket(socket);
      return { uri: `nbd+unix:///?socket=${socket}`, stop: child.stop };
    };
    const sink = await serve('null', ['null', `size=${bytes.length}`]); // accepts writes, reads zeroes
    try {
      const result = await fleece(['restore', id, sink.uri, '--repo', repo, '--verify']);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stdout, /differs: offset 0 length 65536/);
      assert.match(result.stderr, /differs from backup/);
    } finally {
      await sink.stop();
    }
    const readOnly = await serve('ro', ['-r', 'null', `size=${bytes.length}`]);
    try {
      const result = await fleece(['restore', id, readOnly.uri, '--repo', repo]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /is read-only/);
    } finally {
      await readOnly.stop();
    }
    const small = await serve('small', ['memory', `size=${bytes.length - 1}`]);
    try {
      const result = await fleece(['restore', id, small.uri, '--repo', repo]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`is ${bytes.length - 1} bytes, smaller than backup ${id}`));
    } finally {
      await small.stop();
    }
  } finally {
    await dir.cleanup();
  }
});

test('restore into daemon disks: created with the backup size, or overwritten; smaller and snapshotted disks refused', async () => {
  requireTools('nbdcopy', 'qemu-io');
  await withState(async (state) => {
    const { repo, id, bytes, source } = await setup(state);
    const daemon = await startDaemon(state);
    try {
      const created = await daemon.cliResult('restore', id, 'disk:vm1', '--repo', repo, '--verify');
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /restored .* to disk:vm1\n.*identical to the backup/);
      const disks = await daemon.json<{ name: string; size: number }[]>('disk', 'list');
      assert.deepEqual(disks.map((d) => [d.name, d.size]), [['vm1', bytes.length]]);
      const out = join(state, 'out.img');
      await runOk('nbdcopy', [daemon.uri('vm1'), out]);
      await runOk('cmp', [source, out]);

      // Overwrite an existing disk that holds other data: zero slots must be zeroed too.
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 6M', daemon.uri('vm1')]);
      const again = await daemon.cliResult('restore', id, 'disk:vm1', '--repo', repo, '--verify');
      assert.equal(again.code, 0, again.stderr);
      await runOk('nbdcopy', [daemon.uri('vm1'), out]);
      await runOk('cmp', [source, out]);

      await daemon.cli('disk', 'create', 'small', '--size', '1M');
      const small = await daemon.cliResult('restore', id, 'disk:small', '--repo', repo);
      assert.equal(small.code, 2);
      assert.match(small.stderr, /disk 'small' is 1048576 bytes, smaller than backup/);

      await daemon.cli('snapshot', 'create', 'vm1', '--name', 's1');
      const busy = await daemon.cliResult('restore', id, 'disk:vm1', '--repo', repo);
      assert.equal(busy.code, 2);
      assert.match(busy.stderr, /disk 'vm1' has live snapshots \(s1\)/);
    } finally {
      await daemon.stop();
    }
  });
});
