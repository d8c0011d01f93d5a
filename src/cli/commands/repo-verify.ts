// `fleece verify [ID...]`: re-hashes every chunk the backups need; names damaged backups.

import type { Command } from 'commander';
import { formatSize } from '../../core/size.js';
import { runVerify } from '../../repo/verify.js';
import { EXIT_FAILURE } from '../exit-codes.js';
import { createProgress } from '../progress.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

export function registerVerify(program: Command): void {
  addRepoOptions(program.command('verify'))
    .description('read back and check every chunk of the given backups (default: all)')
    .argument('[ids...]', 'backup ids or unique prefixes')
    .option('--json', 'print json')
    .action(async (ids: string[], flags: RepoFlags) => {
      const repo = await openRepo(flags);
      try {
        const manifests = ids.length > 0 ? ids.map((id) => repo.resolveBackup(id)) : repo.catalog.backups();
        let progress: ReturnType<typeof createProgress> | undefined;
        const report = await runVerify(repo, manifests, {
          onProgress: (done, total) => {
            progress ??= createProgress('verify', total, { bytes: false, quiet: flags.json });
            progress.update(done);
          },
        });
        (progress as ReturnType<typeof createProgress> | undefined)?.stop();
        const damaged = report.backups.filter((b) => !b.ok);
        if (flags.json) printJson({ ok: damaged.length === 0, ...report });
        else {
          for (const b of report.backups) {
            process.stdout.write(`${b.ok ? 'ok     ' : 'DAMAGED'} ${b.id} ${b.disk}\n`);
            for (const p of b.problems) process.stdout.write(`        ${p}\n`);
          }
          for (const p of report.damagedPacks) process.stdout.write(`pack ${p}: content does not match its id\n`);
          process.stdout.write(`${report.backups.length} backups, ${report.chunksChecked} chunks (${formatSize(report.bytesChecked)}) checked, ${damaged.length} damaged\n`);
        }
        if (damaged.length > 0) process.exitCode = EXIT_FAILURE;
      } finally {
        repo.close();
      }
    });
}
