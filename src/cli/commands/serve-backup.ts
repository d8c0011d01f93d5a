// `fleece serve-backup ID`: offers one backup read-only over NBD at once (instant restore):
// chunks are fetched from the repository only when a client reads them.

import type { Command } from 'commander';
import { BackupDevice } from '../../block/drivers/backup-device.js';
import { formatSize } from '../../core/size.js';
import { NbdServer } from '../../nbd/index.js';
import { addListenOptions, listenAndPrint, waitForSignal, type ListenFlags } from '../nbd-listen.js';
import { addRepoOptions, openRepo, type RepoFlags } from '../repo-options.js';

interface ServeBackupFlags extends RepoFlags, ListenFlags {
  readonly export?: string;
  readonly verbose?: boolean;
}

export function registerServeBackup(program: Command): void {
  addListenOptions(addRepoOptions(program.command('serve-backup')))
    .description('serve a backup read-only over NBD until interrupted (chunks fetched on demand)')
    .argument('<id>', 'backup id or unique prefix')
    .option('--export <name>', 'export name (default: the disk name; clients asking for "" get it too)')
    .option('--verbose', 'log connection errors on stderr')
    .action(async (id: string, flags: ServeBackupFlags) => {
      const repo = await openRepo(flags);
      try {
        const manifest = repo.resolveBackup(id);
        const device = await BackupDevice.open(repo, manifest);
        const server = new NbdServer({ log: flags.verbose ? (m) => process.stderr.write(`${m}\n`) : () => {} });
        try {
          const name = flags.export ?? manifest.disk;
          server.addExport({ name, device, readOnly: true, description: `backup ${manifest.id} of ${manifest.disk} at ${manifest.time} (${formatSize(manifest.size)})` });
          await listenAndPrint(server, flags, name);
          await waitForSignal();
        } finally {
          await server.close();
          await device.close();
        }
      } finally {
        repo.close();
      }
    });
}
