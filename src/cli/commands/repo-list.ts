// `fleece list` and `fleece show ID`: backups from the catalog (synced from manifests first).

import type { Command } from 'commander';
import { formatSize } from '../../core/size.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface ListFlags extends RepoFlags {
  readonly disk?: string;
}

export function registerList(program: Command): void {
  addRepoOptions(program.command('list'))
    .description('list backups, oldest first')
    .option('--disk <name>', 'only backups of this disk')
    .option('--json', 'print json')
    .action(async (flags: ListFlags) => {
      const repo = await openRepo(flags);
      try {
        const backups = repo.catalog.backups(flags.disk);
        if (flags.json) {
          printJson(backups.map((m) => ({ id: m.id, disk: m.disk, time: m.time, size: m.size, parent: m.parent, tags: m.tags, counts: m.counts })));
          return;
        }
        for (const m of backups) {
          process.stdout.write(`${m.id.slice(0, 12)}  ${m.time}  ${m.disk.padEnd(16)} ${formatSize(m.size).padStart(10)}  ${m.tags.join(',')}\n`);
        }
      } finally {
        repo.close();
      }
    });

  addRepoOptions(program.command('show'))
    .description('show one backup (id or unique prefix)')
    .argument('<id>', 'backup id or unique prefix')
    .option('--json', 'print json')
    .action(async (id: string, flags: RepoFlags) => {
      const repo = await openRepo(flags);
      try {
        const m = repo.resolveBackup(id);
        if (flags.json) printJson(m);
        else {
          const c = m.counts;
          process.stdout.write([
            `id:         ${m.id}`, `disk:       ${m.disk}`, `time:       ${m.time}`, `size:       ${formatSize(m.size)} (${m.size} bytes)`,
            `chunk size: ${m.chunkSize}`, `parent:     ${m.parent ?? '-'}`, `tags:       ${m.tags.join(', ') || '-'}`,
            `slots:      ${c.slots} (${c.zeroSlots} zero, ${c.newChunks} new, ${c.reusedChunks} reused)`,
            `stored:     ${formatSize(c.newBytes)} new`, `host:       ${m.host}`, '',
          ].join('\n'));
        }
      } finally {
        repo.close();
      }
    });
}
