// `fleece delete ID...` and `fleece prune --keep-…`: remove manifests only; chunk data is never
// rewritten (gc later deletes packs nothing references).

import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { planPrune, isEmptyPolicy, type KeepPolicy } from '../../repo/prune-policy.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface PruneFlags extends RepoFlags {
  readonly keepLast?: string;
  readonly keepHourly?: string;
  readonly keepDaily?: string;
  readonly keepWeekly?: string;
  readonly keepMonthly?: string;
  readonly keepYearly?: string;
  readonly disk?: string;
  readonly dryRun?: boolean;
}

function count(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`invalid ${flag} '${value}': expected a whole number >= 0`);
  return n;
}

export function registerDelete(program: Command): void {
  addRepoOptions(program.command('delete'))
    .description('delete backups (their manifests; run gc to free space)')
    .argument('<ids...>', 'backup ids or unique prefixes')
    .option('--json', 'print json')
    .action(async (ids: string[], flags: RepoFlags) => {
      const repo = await openRepo(flags);
      try {
        const manifests = ids.map((id) => repo.resolveBackup(id));
        for (const m of manifests) await repo.deleteBackup(m.id);
        if (flags.json) printJson({ deleted: manifests.map((m) => m.id) });
        else for (const m of manifests) process.stdout.write(`deleted backup ${m.id}\n`);
      } finally {
        repo.close();
      }
    });

  addRepoOptions(program.command('prune'))
    .description('delete backups not kept by a retention policy (plan, then execute)')
    .option('--keep-last <n>', 'keep the n newest backups')
    .option('--keep-hourly <n>', 'keep the newest backup of each of the last n hours')
    .option('--keep-daily <n>', 'keep the newest backup of each of the last n days')
    .option('--keep-weekly <n>', 'keep the newest backup of each of the last n weeks')
    .option('--keep-monthly <n>', 'keep the newest backup of each of the last n months')
    .option('--keep-yearly <n>', 'keep the newest backup of each of the last n years')
    .option('--disk <name>', 'only consider backups of this disk')
    .option('--dry-run', 'print the plan, delete nothing')
    .option('--json', 'print json')
    .action(async (flags: PruneFlags) => {
      const policy: KeepPolicy = {
        last: count(flags.keepLast, '--keep-last'), hourly: count(flags.keepHourly, '--keep-hourly'),
        daily: count(flags.keepDaily, '--keep-daily'), weekly: count(flags.keepWeekly, '--keep-weekly'),
        monthly: count(flags.keepMonthly, '--keep-monthly'), yearly: count(flags.keepYearly, '--keep-yearly'),
      };
      if (isEmptyPolicy(policy)) throw new UsageError('prune needs at least one --keep-… option');
      const repo = await openRepo(flags);
      try {
        const plan = planPrune(repo.catalog.backups(flags.disk), policy);
        if (!flags.dryRun) for (const d of plan) if (!d.keep) await repo.deleteBackup(d.backup.id);
        if (flags.json) {
          printJson({ dryRun: flags.dryRun ?? false, plan: plan.map((d) => ({ id: d.backup.id, disk: d.backup.disk, time: d.backup.time, keep: d.keep, reasons: d.reasons })) });
        } else {
          for (const d of plan) {
            process.stdout.write(`${d.keep ? 'keep  ' : flags.dryRun ? 'would remove' : 'remove'} ${d.backup.id.slice(0, 12)} ${d.backup.time} ${d.backup.disk}${d.keep ? ` (${d.reasons.join(', ')})` : ''}\n`);
          }
        }
      } finally {
        repo.close();
      }
    });
}
