// A chain of backups of a qcow2 disk through the real CLI: qemu-io writes land in a persistent
// bitmap, `qemu-nbd -r -B` exports it, `fleece backup --bitmap` reads only what it marks, and the
// bitmap is cleared after each success. Every backup restores to the image as it was then.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join } from 'node:path';
import { requireTools, runOk, scratchDir } from '../helpers/tools.js';
import { fleece, startQemuNbd } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Round {
  /** qemu-io commands run on the qcow2 before this backup. */
  readonly writes: string[];
  /** Bytes the bitmap marks afterwards (the writes rounded out to its 64 KiB granularity). */
  readonly dirty: number;
}

const rounds: Round[] = [
  { writes: ['write -P 0x11 0 4M', 'write -P 0x22 10M 1M', 'write -P 0x33 31M 1M'], dirty: 6 * MiB },
  { writes: ['write -P 0x44 1M 4k', 'write -P 0x55 12M 128k', 'write -z 10M 64k'], dirty: 256 * KiB },
  { writes: ['write -P 0x66 20M 192k', 'write -P 0x77 31M 512', 'write -P 0x78 2M 64k'], dirty: 320 * KiB },
  { writes: ['write -P 0x88 5M 64k', 'write -P 0x99 16M 1M', 'write -z 0 64k'], dirty: 1152 * KiB },
];

interface Done {
  readonly id: string;
  readonly expected: string;
}

test('qemu-nbd -B chain: each backup reads only its bitmap and restores the image as it was', async () => {
  requireTools('qemu-nbd', 'qemu-img', 'qemu-io', 'cmp');
  const scratch = await scratchDir('fleece-qnbd-chain-');
  const dir = scratch.path;
  const image = join(dir, 'vm.qcow2');
  const socket = join(dir, 'nbd.sock');
  const repo = join(dir, 'repo');
  const ok = async (args: string[]): Promise<string> => {
    const r = await fleece([...args, '--repo', repo]);
    assert.equal(r.code, 0, `fleece ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    await ok(['init']);
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', image, '32M']);
    await runOk('qemu-img', ['bitmap', '--add', '--granularity', '64k', image, 'b0']);

    const done: Done[] = [];
    for (const [i, round] of rounds.entries()) {
      await runOk('qemu-io', ['-f', 'qcow2', ...round.writes.flatMap((c) => ['-c', c]), image]);
      const expected = join(dir, `expected-${i}.raw`);
      await runOk('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, expected]);

      const qemu = await startQemuNbd(socket, ['-f', 'qcow2', '-r', '-B', 'b0', image]);
      let result;
      try {
        result = await fleece(['backup', `nbd+unix:///?socket=${socket}`, '--disk', 'vm', '--bitmap', 'b0', '--repo', repo, '--json']);
      } finally {
        await qemu.stop();
      }
      assert.equal(result.code, 0, result.stderr);
      // The backup succeeded: QEMU's bitmap is ours to rotate.
      await runOk('qemu-img', ['bitmap', '--clear', image, 'b0']);

      const manifest = JSON.parse(result.stdout) as { id: string; parent: string | null; bytesRead: number; counts: { newChunks: number } };
      const progress = result.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { total: number });
      if (i === 0) {
        assert.match(result.stderr, /no earlier backup of disk 'vm': full backup/);
        assert.equal(manifest.parent, null);
        assert.ok(manifest.bytesRead <= round.dirty, `full backup read ${manifest.bytesRead} bytes of ${round.dirty} allocated`);
      } else {
        assert.equal(manifest.parent, done[i - 1]!.id);
        assert.match(result.stderr, /bitmap 'b0': .* dirty/);
        // Exactly the bitmap's extents were scheduled (a stale, uncleared bitmap would add earlier rounds).
        assert.equal(progress[progress.length - 1]?.total, round.dirty);
        assert.ok(manifest.bytesRead > 0 && manifest.bytesRead <= round.dirty, `incremental ${i} read ${manifest.bytesRead} bytes, dirty ${round.dirty}`);
        assert.ok(manifest.counts.newChunks <= round.dirty / (64 * KiB));
      }
      done.push({ id: manifest.id, expected });
    }

    const restoresAsItWas = async (d: Done): Promise<void> => {
      const restored = join(dir, `restored-${d.id}.raw`);
      await ok(['restore', d.id, restored]);
      await runOk('cmp', [restored, d.expected]);
    };
    for (const d of done) await restoresAsItWas(d);

    // Every backup is logically full: drop a middle one, collect garbage, the rest still restore.
    await ok(['delete', done[2]!.id]);
    await ok(['gc']);
    for (const d of [done[0]!, done[1]!, done[3]!]) await restoresAsItWas(d);
    const listed = (JSON.parse(await ok(['list', '--json'])) as { id: string }[]).map((b) => b.id);
    assert.deepEqual(listed.sort(), [done[0]!.id, done[1]!.id, done[3]!.id].sort());
  } finally {
    await scratch.cleanup();
  }
});

test('a missing bitmap names what the export offers; an unreachable server is one clear line', async () => {
  requireTools('qemu-nbd', 'qemu-img');
  const scratch = await scratchDir('fleece-qnbd-err-');
  const dir = scratch.path;
  const image = join(dir, 'vm.qcow2');
  const socket = join(dir, 'nbd.sock');
  const repo = join(dir, 'repo');
  try {
    assert.equal((await fleece(['init', '--repo', repo])).code, 0);
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', image, '4M']);
    await runOk('qemu-img', ['bitmap', '--add', image, 'daily']);
    const qemu = await startQemuNbd(socket, ['-f', 'qcow2', '-r', '-B', 'daily', '-x', 'vm', image]);
    let missing;
    try {
      missing = await fleece(['backup', `nbd+unix:///vm?socket=${socket}`, '--disk', 'vm', '--bitmap', 'weekly', '--repo', repo]);
    } finally {
      await qemu.stop();
    }
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /nbd export 'vm' .* offers no dirty bitmap 'weekly'.*it offers: 'daily'/);
    assert.doesNotMatch(missing.stderr, /\n\s+at /);

    const down = await fleece(['backup', `nbd+unix:///vm?socket=${socket}`, '--disk', 'vm', '--repo', repo]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^fleece: cannot open nbd source 'nbd\+unix:\/\/\/vm\?socket=.*': .*ENOENT/);
    assert.equal(down.stderr.trim().split('\n').length, 1);
  } finally {
    await scratch.cleanup();
  }
});
