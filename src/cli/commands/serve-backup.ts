// `fleece serve-backup ID`: offers one backup over NBD at once (instant restore): chunks are
// fetched from the repository only when a client reads them. With --overlay FILE the export
// is writable (writes land in FILE, the backup never changes); --fill also copies the whole
// backup into FILE in the background, so FILE ends up the restored disk with those writes.

import type { Command } from 'commander';
import type { BlockDevice } from '../../block/block-device.js';
import { BackupDevice } from '../../block/drivers/backup-device.js';
import { RawFileDevice } from '../../block/drivers/raw-file-device.js';
import { describeError, UsageError } from '../../core/errors.js';
import { formatSize } from '../../core/size.js';
import { OverlayDevice } from '../../jobs/instant-restore/overlay-device.js';
import { NbdServer } from '../../nbd/index.js';
import { addListenOptions, listenAndPrint, waitForSignal, type ListenFlags } from '../nbd-listen.js';
import { addRepoOptions, openRepo, type RepoFlags } from '../repo-options.js';

interface ServeBackupFlags extends RepoFlags, ListenFlags {
  readonly export?: string;
  readonly overlay?: string;
  readonly fill?: boolean;
  readonly verbose?: boolean;
}

export function registerServeBackup(program: Command): void {
  addListenOptions(addRepoOptions(program.command('serve-backup')))
    .description('serve a backup over NBD until interrupted (chunks fetched on demand; read-only unless --overlay)')
    .argument('<id>', 'backup id or unique prefix')
    .option('--export <name>', 'export name (default: the disk name; clients asking for "" get it too)')
    .option('--overlay <file>', 'make the export writable: writes go to this new sparse file')
    .option('--fill', 'with --overlay: copy the whole backup into the file in the background (instant restore)')
    .option('--verbose', 'log connection errors on stderr')
    .action(async (id: string, flags: ServeBackupFlags) => {
      if (flags.fill && !flags.overlay) throw new UsageError('--fill needs --overlay FILE (the file the backup is restored into)');
      const repo = await openRepo(flags);
      const controller = new AbortController();
      try {
        const manifest = repo.resolveBackup(id);
        const backup = await BackupDevice.open(repo, manifest);
        let device: BlockDevice = backup;
        if (flags.overlay) {
          const file = await RawFileDevice.open(flags.overlay, { create: manifest.size }).catch(async (err: unknown) => {
            await backup.close();
            throw new UsageError(`cannot create overlay '${flags.overlay}' (it must not exist): ${describeError(err)}`, { cause: err });
          });
          device = new OverlayDevice(backup, file, { granularity: manifest.chunkSize });
        }
        const server = new NbdServer({ log: flags.verbose ? (m) => process.stderr.write(`${m}\n`) : () => {} });
        try {
          const name = flags.export ?? manifest.disk;
          const what = flags.overlay ? `writable through ${flags.overlay}` : 'read-only';
          server.addExport({ name, device, readOnly: !flags.overlay, description: `backup ${manifest.id} of ${manifest.disk} at ${manifest.time} (${formatSize(manifest.size)}), ${what}` });
          await listenAndPrint(server, flags, name);
          if (flags.fill && device instanceof OverlayDevice) startFill(device, flags.overlay!, controller.signal);
          await waitForSignal();
        } finally {
          controller.abort();
          await server.close();
          await device.close();
        }
      } finally {
        repo.close();
      }
    });
}

/** Copies the backup into the overlay while clients use the export; reports on stderr. */
function startFill(device: OverlayDevice, file: string, signal: AbortSignal): void {
  const started = Date.now();
  device.fill({ signal }).then(
    () => process.stderr.write(`fill complete: ${file} holds the whole disk (${((Date.now() - started) / 1000).toFixed(1)} s)\n`),
    (err: unknown) => {
      if (!signal.aborted) process.stderr.write(`fill failed: ${describeError(err)}; the export keeps serving\n`);
    },
  );
}
