// `fleece restore ID TARGET`: writes a backup's image to a (sparse) file.

import type { Command } from 'commander';
import { formatSize } from '../../core/size.js';
import { runRestore } from '../../repo/restore-engine.js';
import { createProgress } from '../progress.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

export function registerRestore(program: Command): void {
  addRepoOptions(program.command('restore'))
    .description('restore a backup into a sparse image file')
    .argument('<id>', 'backup id or unique prefix')
    .argument('<target>', 'image file to write (created or truncated)')
    .option('--no-sync', 'skip the final fsync of the image (faster; the data may still be in the page cache)')
    .option('--json', 'print json')
    .action(async (id: string, target: string, flags: RepoFlags & { readonly sync: boolean }) => {
      const repo = await openRepo(flags);
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      try {
        const manifest = repo.resolveBackup(id);
        const progress = createProgress('restore', manifest.size, { quiet: flags.json });
        const started = Date.now();
        try {
          await runRestore(repo, manifest, target, { sync: flags.sync, signal: controller.signal, onProgress: (p) => progress.update(p.bytesDone) });
        } finally {
          progress.stop();
        }
        if (flags.json) printJson({ id: manifest.id, target, size: manifest.size, durationMs: Date.now() - started });
        else process.stdout.write(`restored ${manifest.id} (${formatSize(manifest.size)}) to ${target}\n`);
      } finally {
        process.off('SIGINT', onSignal);
        repo.close();
      }
    });
}
