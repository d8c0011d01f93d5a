// `fleece backup SOURCE --disk NAME`: backs up a daemon disk (`disk:NAME`, incremental through
// its backup bitmap), an NBD export (`nbd://…`, incremental with `--bitmap`) or a raw image
// file into the repository. Ctrl-C cancels cleanly: no manifest, change tracking untouched.

import { setMaxListeners } from 'node:events';
import type { Command } from 'commander';
import { ApiClient } from '../../api/api-client.js';
import { UsageError } from '../../core/errors.js';
import { formatSize, parseSize } from '../../core/size.js';
import { ChunkPool } from '../../repo/chunk-pool.js';
import { runBackup } from '../../repo/backup-engine.js';
import type { Manifest } from '../../repo/manifest.js';
import { openJobSource } from '../../jobs/sources/open-job-source.js';
import { countingSource } from '../../jobs/sources/counting-source.js';
import { rateLimited } from '../../jobs/sources/rate-limited-source.js';
import { createProgress } from '../progress.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface BackupFlags extends RepoFlags {
  readonly disk?: string;
  readonly tag: string[];
  readonly parent?: string;
  readonly bitmap?: string;
  readonly state?: string;
  readonly rateLimit?: string;
}

export function registerBackup(program: Command): void {
  addRepoOptions(program.command('backup'))
    .description('back up a daemon disk, an NBD export or a raw image file')
    .argument('<source>', 'disk:NAME (a disk of the daemon), nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, or an image file')
    .option('--disk <name>', 'disk name the backup is filed under (default: NAME of disk:NAME; required otherwise)')
    .option('--parent <id>', 'backup the changes are relative to (default: the disk\'s latest backup)')
    .option('--bitmap <name>', 'nbd:// sources: read only extents dirty in qemu:dirty-bitmap:NAME')
    .option('--state <dir>', 'daemon state directory for disk:NAME (default: $FLEECE_STATE)')
    .option('--rate-limit <bytes/s>', 'read the source at most this fast, e.g. 50M')
    .option('--tag <tag>', 'tag the backup (repeatable)', (v: string, all: string[]) => [...all, v], [])
    .option('--json', 'print the new backup as json; progress as json lines on stderr')
    .addHelpText('after', `
Every backup is logically full: it restores alone and can be deleted alone. Only chunks the
repository lacks are stored. disk:NAME backups read just the clusters written since the disk's
previous backup (the first one is full); so do nbd:// backups given --bitmap.`)
    .action(async (spec: string, flags: BackupFlags) => {
      const disk = flags.disk ?? (spec.startsWith('disk:') ? spec.slice('disk:'.length) : undefined);
      if (!disk) throw new UsageError(`--disk NAME is required for source '${spec}'`);
      const rate = flags.rateLimit !== undefined ? parseSize(flags.rateLimit, '--rate-limit') : undefined;
      // The chunk workers load while the repository opens (a passphrase's scrypt, the catalog).
      ChunkPool.prestart();
      const repo = await openRepo(flags);
      const controller = new AbortController();
      // Every read in flight (a batch reads its runs at once, several batches run) listens for abort.
      setMaxListeners(1024, controller.signal);
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let job;
      try {
        const daemon = spec.startsWith('disk:') ? ApiClient.fromState(flags.state) : undefined;
        job = await openJobSource(spec, { repo, disk, parent: flags.parent, bitmap: flags.bitmap, daemon, signal: controller.signal });
        for (const notice of job.notices) process.stderr.write(`fleece: ${notice}\n`);
        const source = countingSource(rate ? rateLimited(job.source, rate) : job.source);
        const total = job.changed ? job.changed.reduce((sum, r) => sum + r.length, 0) : source.size;
        const progress = createProgress('backup', total, { events: flags.json });
        const started = Date.now();
        let manifest: Manifest;
        try {
          manifest = await runBackup(repo, source, {
            disk,
            tags: flags.tag,
            parent: job.parent,
            changed: job.changed,
            time: job.time,
            checkpoint: job.checkpoint,
            signal: controller.signal,
            onProgress: (p) => progress.update(Math.min(p.bytesDone, total), `new ${formatSize(p.newBytes)}`),
          });
        } catch (err) {
          await job.abort();
          throw err;
        } finally {
          progress.stop();
        }
        await job.commit(manifest);
        report(manifest, source.bytesRead, Date.now() - started, flags.json === true);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await job?.close();
        repo.close();
      }
    });
}

function report(manifest: Manifest, bytesRead: number, ms: number, json: boolean): void {
  if (json) return printJson({ ...manifest, durationMs: ms, bytesRead });
  const c = manifest.counts;
  const kind = manifest.parent ? `incremental on ${manifest.parent.slice(0, 12)}` : 'full';
  process.stdout.write(`backup ${manifest.id} of disk ${manifest.disk} (${kind}): ${formatSize(manifest.size)} in ${(ms / 1000).toFixed(1)} s, ` +
    `read ${formatSize(bytesRead)}, ${c.newChunks} new chunks (${formatSize(c.newBytes)} stored), ${c.reusedChunks} reused, ${c.zeroSlots} zero\n`);
}
