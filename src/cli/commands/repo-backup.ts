// `fleece backup SOURCE --disk NAME`: backs up a raw image file into the repository. The file is
// opened as a read-only RawFileDevice, so its holes (SEEK_DATA/SEEK_HOLE) are skipped unread.

import type { Command } from 'commander';
import { formatSize } from '../../core/size.js';
import { RawFileDevice } from '../../block/drivers/raw-file-device.js';
import { FleeceError, UsageError } from '../../core/errors.js';
import { FileSource, type BackupSource } from '../../repo/backup-source.js';
import { runBackup } from '../../repo/backup-engine.js';
import { createProgress } from '../progress.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface BackupFlags extends RepoFlags {
  readonly disk: string;
  readonly tag: string[];
  readonly parent?: string;
}

export function registerBackup(program: Command): void {
  addRepoOptions(program.command('backup'))
    .description('back up a raw image file')
    .argument('<source>', 'raw image file')
    .requiredOption('--disk <name>', 'disk name the backup belongs to')
    .option('--tag <tag>', 'tag the backup (repeatable)', (v: string, all: string[]) => [...all, v], [])
    .option('--json', 'print the new backup as json')
    .action(async (sourcePath: string, flags: BackupFlags) => {
      const repo = await openRepo(flags, { sync: false });
      const source = await openSource(sourcePath);
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const progress = createProgress('backup', source.size, { quiet: flags.json });
      try {
        const started = Date.now();
        const manifest = await runBackup(repo, source, {
          disk: flags.disk,
          tags: flags.tag,
          signal: controller.signal,
          onProgress: (p) => progress.update(p.bytesDone, `new ${formatSize(p.newBytes)}`),
        });
        progress.stop();
        const seconds = (Date.now() - started) / 1000;
        if (flags.json) printJson({ ...manifest, durationMs: Date.now() - started });
        else {
          const c = manifest.counts;
          process.stdout.write(`backup ${manifest.id} of disk ${manifest.disk}: ${formatSize(manifest.size)} in ${seconds.toFixed(1)} s, ` +
            `${c.newChunks} new chunks (${formatSize(c.newBytes)} stored), ${c.reusedChunks} reused, ${c.zeroSlots} zero\n`);
        }
      } finally {
        progress.stop();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await source.close();
        repo.close();
      }
    });
}

/**
 * A regular file as a RawFileDevice (holes known, skipped unread); anything else (a block
 * device), or any file when the native addon is missing, read plainly: slower, same backup.
 */
async function openSource(path: string): Promise<BackupSource & { close(): Promise<void> }> {
  try {
    return await RawFileDevice.open(path, { readOnly: true });
  } catch (err) {
    if (err instanceof UsageError || (err instanceof FleeceError && err.code === 'ENATIVE')) return FileSource.open(path);
    throw err;
  }
}
