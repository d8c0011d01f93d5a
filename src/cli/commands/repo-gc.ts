// `fleece gc`: deletes packs no backup references (safe alongside running backups: leases).

import type { Command } from 'commander';
import { formatSize } from '../../core/size.js';
import { runGc } from '../../repo/gc.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface GcFlags extends RepoFlags {
  readonly dryRun?: boolean;
}

export function registerGc(program: Command): void {
  addRepoOptions(program.command('gc'))
    .description('delete pack objects that no backup references')
    .option('--dry-run', 'report what would be deleted')
    .option('--json', 'print json')
    .action(async (flags: GcFlags) => {
      const repo = await openRepo(flags, { sync: false });
      try {
        const report = await runGc(repo, { dryRun: flags.dryRun });
        if (flags.json) printJson(report);
        else {
          const verb = report.dryRun ? 'would delete' : 'deleted';
          process.stdout.write(`${verb} ${report.deletedPacks.length} packs (${formatSize(report.deletedBytes)}), kept ${report.keptPacks}\n`);
          if (report.condemnedPacks.length > 0) {
            process.stdout.write(`${report.liveBackups} backups are running: ${report.condemnedPacks.length} unreferenced packs condemned, deleted by a later gc\n`);
          }
        }
      } finally {
        repo.close();
      }
    });
}
