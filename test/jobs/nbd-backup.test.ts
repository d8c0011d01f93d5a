// Backups pulled over NBD: a full backup of a qcow2 disk through qemu-nbd, then an incremental
// reading only the ranges of a qemu dirty bitmap; both restore to the disk's exact bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join } from 'node:path';
import { NbdDevice } from '../../src/block/drivers/nbd-device.js';
import { dirtyRanges } from '../../src/jobs/dirty-ranges.js';
import { MemoryStore, Repository, runBackup, runRestore } from '../../src/repo/index.js';
import { requireTools, runOk, scratchDir } from '../helpers/tools.js';
import { startQemuNbd } from './helpers.js';

test('incremental backup over NBD from a qemu dirty bitmap restores the exact disk', async () => {
  requireTools('qemu-nbd', 'qemu-img', 'qemu-io', 'cmp');
  const scratch = await scratchDir('fleece-nbdbk-');
  const dir = scratch.path;
  const image = join(dir, 'disk.qcow2');
  const socket = join(dir, 'nbd.sock');
  const repo = await Repository.init(new MemoryStore(), { chunkSize: 64 * 1024 });
  const backupOver = async (bitmap: string | undefined, parent?: string): Promise<{ id: string; bytesRead: number }> => {
    const qemu = await startQemuNbd(socket, ['-f', 'qcow2', '-r', ...(bitmap ? ['-B', bitmap] : []), image]);
    const context = bitmap ? `qemu:dirty-bitmap:${bitmap}` : undefined;
    const device = await NbdDevice.open(`nbd+unix:///?socket=${socket}`, { metaContexts: context ? [context] : [] });
    try {
      const changed = context ? await dirtyRanges(device, context) : undefined;
      let bytesRead = 0;
      const source = {
        size: device.size,
        capabilities: device.capabilities,
        read: (offset: number, target: Uint8Array, options?: { signal?: AbortSignal }) => {
          bytesRead += target.length;
          return device.read(offset, target, options);
        },
        blockStatus: device.blockStatus.bind(device),
      };
      const manifest = await runBackup(repo, source, { disk: 'vm1', ...(parent && changed ? { parent, changed } : {}) });
      return { id: manifest.id, bytesRead };
    } finally {
      await device.close();
      await qemu.stop();
    }
  };
  try {
    await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', image, '16M']);
    await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 3M', '-c', 'write -P 0x22 8M 1M', image]);
    const full = await backupOver(undefined);
    await runOk('qemu-img', ['bitmap', '--add', '--granularity', '64k', image, 'since-full']);
    await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 1M 4k', '-c', 'write -P 0x44 12M 128k', '-c', 'write -z 8M 64k', image]);
    const incremental = await backupOver('since-full', full.id);
    assert.ok(incremental.bytesRead <= 3 * 64 * 1024 + 128 * 1024, `incremental read ${incremental.bytesRead} bytes`);

    await runOk('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', image, join(dir, 'now.raw')]);
    await runRestore(repo, repo.resolveBackup(incremental.id), join(dir, 'restored.raw'));
    await runOk('cmp', [join(dir, 'restored.raw'), join(dir, 'now.raw')]);
  } finally {
    repo.close();
    await scratch.cleanup();
  }
});
