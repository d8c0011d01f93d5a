// `fleece stats`: logical against stored bytes, dedup and compression ratios, object count.

import type { Command } from 'commander';
import { formatSize } from '../../core/size.js';
import { collectStats } from '../../repo/stats.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

export function registerStats(program: Command): void {
  addRepoOptions(program.command('stats'))
    .description('repository statistics')
    .option('--json', 'print json')
    .action(async (flags: RepoFlags) => {
      const repo = await openRepo(flags);
      try {
        const s = await collectStats(repo);
        if (flags.json) printJson(s);
        else {
          process.stdout.write([
            `backups:           ${s.backups}`,
            `logical size:      ${formatSize(s.logicalBytes)} (${formatSize(s.dataBytes)} non-zero)`,
            `unique chunks:     ${s.chunks} (${formatSize(s.uniqueBytes)}, stored ${formatSize(s.uniqueStoredBytes)})`,
            `packs:             ${s.packs} (${formatSize(s.packBytes)})`,
            `objects in store:  ${s.objects}`,
            `dedup ratio:       ${s.dedupRatio.toFixed(2)}`,
            `compression ratio: ${s.compressionRatio.toFixed(2)}`, '',
          ].join('\n'));
        }
      } finally {
        repo.close();
      }
    });
}
