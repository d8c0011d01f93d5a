// export-diff / import-diff end to end: three backups of one disk, diffs A->B and B->C merged by
// Ceph's own `rbd merge-diff`, applied to A's restore, give C byte for byte; a diff applied to
// an NBD export gives the right bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { encodeEnd, encodeHeader, encodeZero } from '../../src/jobs/rbd-diff/index.js';
import { NbdServer } from '../../src/nbd/index.js';
import { prng } from '../block/conformance.js';
import { requireTools, runOk, scratchDir } from '../helpers/tools.js';
import { fleece } from './helpers.js';

const MiB = 1024 * 1024;
const K = 1024;

/** Image A: random data with zero gaps; B and C change, zero and extend parts of it. */
function images(): { a: Buffer; b: Buffer; c: Buffer } {
  const random = prng(42);
  const fill = (buf: Buffer, offset: number, length: number): void => {
    for (let i = 0; i < length; i++) buf[offset + i] = (random() * 256) | 0;
  };
  const a = Buffer.alloc(4 * MiB);
  fill(a, 0, 512 * K);
  fill(a, 1 * MiB, 1 * MiB);
  fill(a, 3 * MiB + 100, 200 * K);
  const b = Buffer.from(a);
  fill(b, 100 * K, 10); // a few bytes inside one chunk
  b.fill(0, 1 * MiB + 64 * K, 1 * MiB + 256 * K); // whole chunks zeroed
  fill(b, 2 * MiB + 5 * K, 300 * K); // data where A had zeroes
  const c = Buffer.alloc(5 * MiB + 1000); // grown, with a ragged tail
  b.copy(c);
  fill(c, 0, 64 * K);
  c.fill(0, 2 * MiB, 2 * MiB + 128 * K);
  fill(c, 5 * MiB - 10, 1010);
  return { a, b, c };
}

async function backup(repo: string, image: string): Promise<string> {
  const result = await fleece(['backup', '--repo', repo, '--disk', 'vm1', '--json', image]);
  assert.equal(result.code, 0, result.stderr);
  return (JSON.parse(result.stdout) as { id: string }).id;
}

async function ok(args: string[]): Promise<string> {
  const result = await fleece(args);
  assert.equal(result.code, 0, `fleece ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

test('export-diff A->B and B->C, rbd merge-diff, import-diff onto A gives C; full diffs rebuild an image', async () => {
  requireTools('rbd', 'cmp');
  const scratch = await scratchDir('fleece-diff-');
  const dir = scratch.path;
  try {
    const repo = join(dir, 'repo');
    await ok(['init', '--repo', repo, '--chunk-size', '64K']);
    const { a, b, c } = images();
    const ids: string[] = [];
    for (const [name, bytes] of [['a', a], ['b', b], ['c', c]] as const) {
      await writeFile(join(dir, `${name}.raw`), bytes);
      ids.push(await backup(repo, join(dir, `${name}.raw`)));
    }
    const [idA, idB, idC] = ids as [string, string, string];
    const report = JSON.parse(await ok(['export-diff', '--repo', repo, '--json', '--from', idA, idB, join(dir, 'ab.diff')])) as { writtenBytes: number; zeroedBytes: number };
    assert.equal(report.writtenBytes, 6 * 64 * K, 'one chunk for the small change, five for the new data');
    assert.equal(report.zeroedBytes, 3 * 64 * K);
    await ok(['export-diff', '--repo', repo, '--from', idB, idC, join(dir, 'bc.diff')]);
    await runOk('rbd', ['merge-diff', '--no-progress', join(dir, 'ab.diff'), join(dir, 'bc.diff'), join(dir, 'ac.diff')]);

    await ok(['restore', '--repo', repo, idA, join(dir, 'restored.raw')]);
    await ok(['import-diff', join(dir, 'ac.diff'), join(dir, 'restored.raw')]);
    await runOk('cmp', [join(dir, 'restored.raw'), join(dir, 'c.raw')]);

    // A full diff (no --from) builds the image from nothing, in a new file.
    await ok(['export-diff', '--repo', repo, idB, join(dir, 'full-b.diff')]);
    await ok(['import-diff', join(dir, 'full-b.diff'), join(dir, 'new-b.raw')]);
    await runOk('cmp', [join(dir, 'new-b.raw'), join(dir, 'b.raw')]);
    // The diff's metadata names the backups as snapshots, as rbd expects.
    const head = (await readFile(join(dir, 'ac.diff'))).subarray(0, 12 + 5 + idA.length).toString('latin1');
    assert.equal(head, `rbd diff v1\nf${String.fromCharCode(idA.length)}\0\0\0${idA}`);
  } finally {
    await scratch.cleanup();
  }
});

test('import-diff into an NBD export (our server) writes exactly the diff', async () => {
  const scratch = await scratchDir('fleece-diffnbd-');
  const dir = scratch.path;
  const server = new NbdServer();
  try {
    const repo = join(dir, 'repo');
    await ok(['init', '--repo', repo, '--chunk-size', '64K']);
    const { a, b } = images();
    await writeFile(join(dir, 'a.raw'), a);
    await writeFile(join(dir, 'b.raw'), b);
    const idA = await backup(repo, join(dir, 'a.raw'));
    const idB = await backup(repo, join(dir, 'b.raw'));
    await ok(['export-diff', '--repo', repo, '--from', idA, idB, join(dir, 'ab.diff')]);

    const device = new MemoryDevice(a.length);
    await device.write(0, a);
    server.addExport({ name: 'vm1', device });
    const socket = join(dir, 'nbd.sock');
    await server.listen({ path: socket });
    await ok(['import-diff', join(dir, 'ab.diff'), `nbd+unix:///vm1?socket=${socket}`]);
    const got = Buffer.alloc(b.length);
    await device.read(0, got);
    assert.ok(got.equals(b), 'the export holds B after the diff');

    // A diff for another size is refused without writing.
    await writeFile(join(dir, 'other.diff'), Buffer.concat([encodeHeader({ size: 12345 }), encodeZero(0, 12345), encodeEnd()]));
    const bad = await fleece(['import-diff', join(dir, 'other.diff'), `nbd+unix:///vm1?socket=${socket}`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /nbd export .* is 4194304 bytes but the diff is for 12345 bytes/);
    await device.read(0, got);
    assert.ok(got.equals(b), 'the refused diff wrote nothing');
    // Streams: export to stdout piped into import from stdin, onto a copy of A.
    await writeFile(join(dir, 'piped.raw'), a);
    const piped = await runOk('sh', ['-c', `node dist/src/cli/fleece.cjs export-diff --repo "$1" --from "$2" "$3" - | node dist/src/cli/fleece.cjs import-diff - "$4"`, 'sh', repo, idA, idB, join(dir, 'piped.raw')]);
    assert.match(piped, /applied .* -> /);
    await runOk('cmp', [join(dir, 'piped.raw'), join(dir, 'b.raw')]);
    // Backups of different disks are refused.
    const other = await fleece(['backup', '--repo', repo, '--disk', 'vm2', '--json', join(dir, 'a.raw')]);
    const idOther = (JSON.parse(other.stdout) as { id: string }).id;
    const mixed = await fleece(['export-diff', '--repo', repo, '--from', idOther, idB, join(dir, 'mixed.diff')]);
    assert.equal(mixed.code, 1);
    assert.match(mixed.stderr, /are of different disks/);
    const wrong = await fleece(['import-diff', join(dir, 'ab.diff'), `nbd+unix:///nope?socket=${socket}`]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /server refused export 'nope'/);
  } finally {
    await server.close();
    await scratch.cleanup();
  }
});
