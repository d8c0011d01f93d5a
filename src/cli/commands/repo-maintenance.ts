// `fleece repo check` (structural consistency) and `fleece repo rebuild-catalog`.

import type { Command } from 'commander';
import { runCheck } from '../../repo/check.js';
import { EXIT_FAILURE } from '../exit-codes.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

export function registerRepoMaintenance(program: Command): void {
  const repo = program.command('repo').description('repository maintenance');
  addRepoOptions(repo.command('check'))
    .description('check that every backup’s index and chunks exist; report orphans')
    .option('--json', 'print json')
    .action(async (flags: RepoFlags) => {
      const r = await openRepo(flags, { sync: false });
      try {
        const report = await runCheck(r);
        if (flags.json) printJson({ ok: report.errors.length === 0, ...report });
        else {
          for (const e of report.errors) process.stdout.write(`error: ${e}\n`);
          for (const w of report.warnings) process.stdout.write(`warning: ${w}\n`);
          process.stdout.write(`${report.backups} backups, ${report.packs} packs: ${report.errors.length === 0 ? 'no errors' : `${report.errors.length} errors`}\n`);
        }
        if (report.errors.length > 0) process.exitCode = EXIT_FAILURE;
      } finally {
        r.close();
      }
    });
  addRepoOptions(repo.command('rebuild-catalog'))
    .description('recreate the catalog from manifests and pack indexes')
    .option('--json', 'print json')
    .action(async (flags: RepoFlags) => {
      const r = await openRepo(flags, { sync: false });
      try {
        r.catalog.clear();
        const report = await r.syncCatalog();
        const result = { backups: r.catalog.backups().length, packs: r.catalog.packs().size, ...report };
        if (flags.json) printJson(result);
        else process.stdout.write(`catalog rebuilt: ${result.backups} backups, ${result.packs} packs, ${report.rebuiltIndexes} pack indexes rebuilt, ${report.brokenPacks.length} broken packs\n`);
      } finally {
        r.close();
      }
    });
}
