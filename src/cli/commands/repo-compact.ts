// `fleece compact`: repacks mostly-empty packs (live bytes below --threshold) and deletes the old
// ones; safe alongside running backups and gc (it takes the gc lock, waits for older backups).

import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { formatSize } from '../../core/size.js';
import { runCompact } from '../../repo/compact.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface CompactFlags extends RepoFlags {
  readonly dryRun?: boolean;
  readonly threshold: string;
}

/** "50%" or "0.5" -> 0.5 */
export function parseThreshold(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(%?)$/.exec(text.trim());
  const value = match ? Number(match[1]) / (match[2] ? 100 : 1) : NaN;
  if (!(value > 0 && value <= 1)) throw new UsageError(`invalid threshold '${text}': expected a percentage from 1% to 100% (or a fraction in (0, 1])`);
  return value;
}

export function registerCompact(program: Command): void {
  addRepoOptions(program.command('compact'))
    .description('repack packs whose live bytes are below a threshold, then delete the old packs')
    .option('--threshold <percent>', 'repack packs with less than this share of live bytes', '50%')
    .option('--dry-run', 'report what would be repacked')
    .option('--json', 'print json')
    .action(async (flags: CompactFlags) => {
      const threshold = parseThreshold(flags.threshold);
      const repo = await openRepo(flags, { sync: false });
      try {
        const report = await runCompact(repo, { threshold, dryRun: flags.dryRun });
        if (flags.json) printJson(report);
        else if (report.dryRun) {
          process.stdout.write(`would repack ${report.repackedPacks.length} packs (${formatSize(report.repackedBytes)}): copy ${formatSize(report.copiedBytes)} of live data, free about ${formatSize(report.freedBytes)}\n`);
        } else {
          process.stdout.write(`repacked ${report.repackedPacks.length} packs (${formatSize(report.repackedBytes)}) into ${report.newPacks} new: copied ${report.copiedBlobs} blobs (${formatSize(report.copiedBytes)}), freed ${formatSize(report.freedBytes)}\n`);
          for (const d of report.damagedPacks) process.stdout.write(`kept pack ${d.pack}: ${d.error}\n`);
        }
        if (report.damagedPacks.length > 0) process.exitCode = 1;
      } finally {
        repo.close();
      }
    });
}
