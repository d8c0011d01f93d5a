// `fleece export-diff [--from ID] ID FILE` and `fleece import-diff FILE TARGET`: backups as
// Ceph `rbd diff v1` streams (rbd import-diff and rbd merge-diff read them), and such streams
// applied to a raw image file or an NBD export.

import { createReadStream } from 'node:fs';
import { open, stat, truncate } from 'node:fs/promises';
import type { Command } from 'commander';
import type { BlockDevice } from '../../block/block-device.js';
import { NbdDevice } from '../../block/drivers/nbd-device.js';
import { RawFileDevice } from '../../block/drivers/raw-file-device.js';
import { formatSize } from '../../core/size.js';
import { DiffError } from '../../jobs/rbd-diff/format.js';
import { exportDiff } from '../../jobs/rbd-diff/export-diff.js';
import { importDiff } from '../../jobs/rbd-diff/import-diff.js';
import { isNbdUri } from '../../nbd/client/nbd-uri.js';
import { createProgress } from '../progress.js';
import { addRepoOptions, openRepo, printJson, type RepoFlags } from '../repo-options.js';

interface ExportFlags extends RepoFlags {
  readonly from?: string;
}

export function registerRbdDiff(program: Command): void {
  addRepoOptions(program.command('export-diff'))
    .description('write the changes between two backups as an rbd diff v1 stream (a full image without --from)')
    .argument('<id>', 'backup id or unique prefix (the newer one)')
    .argument('<file>', "diff file to create, or '-' for stdout")
    .option('--from <id>', 'older backup of the same disk to diff against')
    .option('--json', 'print json')
    .action(async (id: string, file: string, flags: ExportFlags) => {
      const repo = await openRepo(flags);
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      const handle = file === '-' ? undefined : await open(file, 'w');
      try {
        const to = repo.resolveBackup(id);
        const from = flags.from !== undefined ? repo.resolveBackup(flags.from) : undefined;
        const sink = handle ? async (bytes: Buffer): Promise<void> => void (await handle.write(bytes)) : stdoutSink;
        const progress = createProgress('export-diff', to.size, { quiet: flags.json || !handle });
        let report;
        try {
          report = await exportDiff(repo, to, sink, {
            ...(from ? { from } : {}),
            signal: controller.signal,
            onProgress: (p) => progress.update(Math.min(to.size, p.slotsDone * to.chunkSize)),
          });
        } finally {
          progress.stop();
        }
        await handle?.sync();
        const summary = { from: from?.id ?? null, to: to.id, file, ...report };
        if (flags.json) printJson(summary);
        else if (handle) process.stdout.write(`diff ${from?.id ?? '(nothing)'} -> ${to.id}: ${formatSize(report.writtenBytes)} written, ${formatSize(report.zeroedBytes)} zeroed, into ${file}\n`);
      } finally {
        await handle?.close();
        process.off('SIGINT', onSignal);
        repo.close();
      }
    });

  program
    .command('import-diff')
    .description('apply an rbd diff v1 stream to a raw image file or an nbd:// / nbd+unix:// export')
    .argument('<file>', "diff file, or '-' for stdin")
    .argument('<target>', 'raw image file (created or resized to the diff size) or NBD URI')
    .option('--json', 'print json')
    .action(async (file: string, target: string, flags: { json?: boolean }) => {
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      try {
        const source = file === '-' ? process.stdin : createReadStream(file, { highWaterMark: 1024 * 1024 });
        const report = await importDiff(source, (size) => openTarget(target, size), { signal: controller.signal });
        if (flags.json) printJson({ file, target, ...report });
        else process.stdout.write(`applied ${report.fromSnap ?? '(nothing)'} -> ${report.toSnap ?? '(head)'}: ${formatSize(report.writtenBytes)} written, ${formatSize(report.zeroedBytes)} zeroed, to ${target}\n`);
      } finally {
        process.off('SIGINT', onSignal);
      }
    });
}

/** An NBD export of exactly `size` bytes, or a raw file created or resized to `size`. */
async function openTarget(target: string, size: number): Promise<BlockDevice> {
  if (isNbdUri(target)) {
    const device = await NbdDevice.open(target);
    if (device.size !== size) {
      await device.close();
      throw new DiffError('EDIFFTARGET', `nbd export '${target}' is ${device.size} bytes but the diff is for ${size} bytes`);
    }
    return device;
  }
  const existing = await stat(target).catch(() => undefined);
  if (!existing) return RawFileDevice.open(target, { create: size });
  if (existing.size !== size) await truncate(target, size);
  return RawFileDevice.open(target);
}

function stdoutSink(bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(bytes, (err) => (err ? reject(err) : resolve()));
  });
}
