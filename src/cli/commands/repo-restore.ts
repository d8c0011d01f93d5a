// `fleece restore ID TARGET`: writes a backup's image to a sparse file, into an NBD export
// (nbd://…, nbd+unix://…) or into a daemon disk (disk:NAME, created when missing); --verify reads
// it all back and compares; --live makes the daemon serve disk:NAME at once and copy meanwhile.

import type { Command } from 'commander';
import { setMaxListeners } from 'node:events';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiClient } from '../../api/api-client.js';
import type { BlockDevice } from '../../block/block-device.js';
import { FleeceError, UsageError } from '../../core/errors.js';
import { formatSize, parseSize } from '../../core/size.js';
import type { DiskInfo } from '../../daemon/daemon.js';
import type { VerifyTargetReport } from '../../jobs/restore/verify-target.js';
import type { Manifest } from '../../repo/manifest.js';
import type { Repository } from '../../repo/repository.js';
import { restoreImageFile } from '../../repo/restore-file.js';
import { createProgress } from '../progress.js';
import { ChunkPool } from '../../repo/chunk-pool.js';
import { addRepoOptions, openRepo, printJson, repoPath, type RepoFlags } from '../repo-options.js';

interface RestoreFlags extends RepoFlags {
  readonly sync: boolean;
  readonly verify?: boolean;
  readonly verifyOnly?: boolean;
  readonly live?: boolean;
  readonly wait?: boolean;
  readonly state?: string;
  readonly concurrency: string;
  readonly rateLimit?: string;
}

/** An opened target: a file path (restored by the file engine) or a block device. */
interface Target {
  readonly label: string;
  readonly file?: string;
  readonly device?: BlockDevice;
  /** Created for this restore: reads as zero, so zero slots need no writes. */
  readonly fresh: boolean;
}

export function registerRestore(program: Command): void {
  addRepoOptions(program.command('restore'))
    .description('restore a backup into an image file, an NBD export or a daemon disk')
    .argument('<id>', 'backup id or unique prefix')
    .argument('<target>', 'image file (created, or replaced once the restore is complete), nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, or disk:NAME')
    .option('--state <dir>', 'daemon state directory for disk:NAME (default: $FLEECE_STATE)')
    .option('--verify', 'read the whole target back afterwards and compare it with the backup (exit 1 on mismatch)')
    .option('--verify-only', 'only compare the target with the backup; write nothing')
    .option('--live', 'disk:NAME only: the daemon serves the disk at once and copies the backup in the background')
    .option('--wait', 'with --live: wait until the background copy is complete')
    .option('--rate-limit <bytes/s>', 'with --live: copy in the background at most this fast, e.g. 50M (reads by the guest are not limited)')
    .option('--concurrency <n>', 'chunks fetched and written at once (NBD and disk targets)', '8')
    .option('--no-sync', 'skip the final fsync of a new image file (faster; its last writes may still be in the page cache); a file replaced is always synced first')
    .option('--json', 'print json; progress as json lines on stderr')
    .addHelpText('after', `
disk:NAME creates the disk with the backup's size when it does not exist, and refuses a disk that is
smaller or has live snapshots. With --live the daemon needs the repository: its location and the key
file path (or FLEECE_PASSWORD) are sent over the owner-only API socket and kept, 0600, until the copy ends.`)
    .action(async (id: string, spec: string, flags: RestoreFlags) => {
      const concurrency = Number(flags.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new UsageError(`invalid --concurrency '${flags.concurrency}': expected 1-256`);
      if (flags.live) return liveRestore(id, spec, flags);
      if (flags.wait || flags.rateLimit !== undefined) throw new UsageError('--wait and --rate-limit apply to --live only');
      // An image file is written by the chunk workers: start them while the repository opens.
      if (!flags.verifyOnly && !isDeviceSpec(spec)) ChunkPool.prestart();
      const repo = await openRepo(flags);
      const controller = new AbortController();
      setMaxListeners(4 * concurrency + 16, controller.signal); // each request in flight listens for abort
      const onSignal = (): void => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let target: Target | undefined;
      try {
        const manifest = repo.resolveBackup(id);
        const signal = controller.signal;
        target = await openTarget(spec, manifest, flags);
        const started = Date.now();
        let written: { dataBytes: number; zeroBytes: number } | undefined;
        if (!flags.verifyOnly) {
          const progress = createProgress('restore', manifest.size, { events: flags.json });
          try {
            const onProgress = (done: number): void => progress.update(done);
            if (target.device) written = await (await import('../../jobs/restore/device-restore.js')).restoreToDevice(repo, manifest, target.device, { concurrency, targetIsZero: target.fresh, signal, onProgress });
            else await restoreImageFile(repo, manifest, target.file!, { sync: flags.sync, signal, onProgress: (p) => onProgress(p.bytesDone) });
          } finally {
            progress.stop();
          }
        }
        const verified = flags.verify || flags.verifyOnly ? await verify(repo, manifest, target, { concurrency, signal, json: flags.json }) : undefined;
        const durationMs = Date.now() - started;
        if (flags.json) printJson({ id: manifest.id, target: spec, size: manifest.size, ...written, durationMs, ...(verified ? { verified: verified } : {}) });
        else {
          if (!flags.verifyOnly) process.stdout.write(`restored ${manifest.id} (${formatSize(manifest.size)}) to ${target.label}\n`);
          if (verified) process.stdout.write(describeVerify(verified, target.label));
        }
        if (verified && verified.mismatches.length > 0) {
          const first = verified.mismatches[0]!;
          throw new FleeceError('EVERIFY', `${target.label} differs from backup ${manifest.id} in ${verified.mismatches.length} range(s), the first at offset ${first.offset}`);
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await target?.device?.close();
        repo.close();
      }
    });
}

/** An NBD export or a daemon disk, as opposed to an image file. */
function isDeviceSpec(spec: string): boolean {
  return /^nbds?(\+unix)?:\/\//.test(spec) || spec.startsWith('disk:');
}

// NBD, daemon and verify code loads only when a restore needs it: a restore into an image file
// starts ~10 ms sooner without it.

async function openTarget(spec: string, manifest: Manifest, flags: RestoreFlags): Promise<Target> {
  const writing = !flags.verifyOnly;
  if (/^nbds?(\+unix)?:\/\//.test(spec)) {
    const { NbdDevice } = await import('../../block/drivers/nbd-device.js');
    const { checkRestoreTarget } = await import('../../jobs/restore/device-restore.js');
    const device = await NbdDevice.open(spec);
    try {
      if (writing) checkRestoreTarget(manifest, device, spec);
      else if (device.size < manifest.size) throw new UsageError(`target '${spec}' is ${device.size} bytes, smaller than backup ${manifest.id} (${manifest.size} bytes)`);
    } catch (err) {
      await device.close();
      throw err;
    }
    return { label: spec, device, fresh: false };
  }
  if (spec.startsWith('disk:')) return openDiskTarget(spec.slice('disk:'.length), manifest, flags);
  return { label: spec, file: spec, fresh: false };
}

/** A daemon disk over the daemon's NBD socket, created with the backup's size when missing. */
async function openDiskTarget(name: string, manifest: Manifest, flags: RestoreFlags): Promise<Target> {
  const { NbdDevice } = await import('../../block/drivers/nbd-device.js');
  const client = await daemonClient(flags.state);
  const { disks } = await client.call<{ disks: DiskInfo[] }>('GET', '/disks');
  const disk = disks.find((d) => d.name === name);
  let fresh = false;
  if (!disk) {
    if (flags.verifyOnly) throw new FleeceError('EDISK_NOT_FOUND', `no disk named '${name}'`);
    await client.call<DiskInfo>('POST', '/disks', { name, size: manifest.size });
    fresh = true;
  } else {
    if (disk.size < manifest.size) throw new UsageError(`disk '${name}' is ${disk.size} bytes, smaller than backup ${manifest.id} (${manifest.size} bytes)`);
    if (flags.verifyOnly) {
      // Reading is always fine.
    } else if (disk.snapshots.length > 0) {
      throw new UsageError(`disk '${name}' has live snapshots (${disk.snapshots.join(', ')}): release them before overwriting it`);
    } else if (disk.restore && disk.restore.state !== 'done') {
      throw new UsageError(`disk '${name}' is being restored live from backup ${disk.restore.backup}`);
    }
  }
  const uri = `nbd+unix:///${encodeURIComponent(name)}?socket=${join(dirname(client.socketPath), 'nbd.sock')}`;
  return { label: `disk:${name}`, device: await NbdDevice.open(uri), fresh };
}

async function verify(repo: Repository, manifest: Manifest, target: Target, options: { concurrency: number; signal: AbortSignal; json?: boolean }): Promise<VerifyTargetReport> {
  const { RawFileDevice } = await import('../../block/drivers/raw-file-device.js');
  const { verifyTarget } = await import('../../jobs/restore/verify-target.js');
  const device = target.device ?? (await RawFileDevice.open(target.file!, { readOnly: true }));
  const progress = createProgress('verify', manifest.size, { events: options.json });
  try {
    if (device.size < manifest.size) throw new UsageError(`${target.label} is ${device.size} bytes, smaller than backup ${manifest.id} (${manifest.size} bytes)`);
    return await verifyTarget(repo, manifest, device, { concurrency: options.concurrency, signal: options.signal, onProgress: (done) => progress.update(done) });
  } finally {
    progress.stop();
    if (!target.device) await device.close();
  }
}

function describeVerify(report: VerifyTargetReport, label: string): string {
  if (report.mismatches.length === 0) return `verified ${formatSize(report.bytesChecked)} of ${label}: identical to the backup\n`;
  const shown = report.mismatches.slice(0, 10).map((m) => `  differs: offset ${m.offset} length ${m.length}\n`);
  const more = report.mismatches.length > 10 ? `  … and ${report.mismatches.length - 10} more\n` : '';
  return `${shown.join('')}${more}`;
}

/** `--live`: asks the daemon to create disk:NAME over the backup and copy it in the background. */
async function liveRestore(id: string, spec: string, flags: RestoreFlags): Promise<void> {
  if (!spec.startsWith('disk:')) throw new UsageError(`--live needs a disk:NAME target, got '${spec}'`);
  if (flags.verify || flags.verifyOnly) throw new UsageError('--verify cannot be combined with --live (verify the disk once the copy is complete)');
  const name = spec.slice('disk:'.length);
  const client = await daemonClient(flags.state);
  const repo = await openRepo(flags);
  let manifest: Manifest;
  let encrypted: boolean;
  try {
    manifest = repo.resolveBackup(id);
    encrypted = repo.masterKey !== null;
  } finally {
    repo.close();
  }
  const keyFile = flags.keyFile ?? process.env.FLEECE_KEY_FILE;
  const passphrase = keyFile === undefined ? process.env.FLEECE_PASSWORD : undefined;
  if (encrypted && keyFile === undefined && passphrase === undefined) {
    throw new UsageError('a live restore from an encrypted repository needs --key-file or FLEECE_PASSWORD: the daemon unlocks the repository itself');
  }
  const location = repoPath(flags);
  const info = await client.call<DiskInfo>('POST', '/restores', {
    name,
    repo: location.startsWith('s3://') ? location : resolve(location),
    backup: manifest.id,
    ...(flags.rateLimit !== undefined ? { rateLimit: parseSize(flags.rateLimit, '--rate-limit') } : {}),
    ...(encrypted && keyFile !== undefined ? { keyFile: resolve(keyFile) } : {}),
    ...(encrypted && passphrase !== undefined ? { passphrase } : {}),
  });
  if (!flags.json) process.stdout.write(`disk ${name} (${formatSize(info.size)}) serves backup ${manifest.id} now as NBD export '${info.export}'; copying in the background\n`);
  const final = flags.wait ? await waitForCopy(client, name, manifest.size, flags.json) : info;
  if (flags.json) printJson(final);
  else if (flags.wait) process.stdout.write(`restore of ${manifest.id} into disk ${name} complete\n`);
}

async function daemonClient(state: string | undefined): Promise<ApiClient> {
  const { ApiClient } = await import('../../api/api-client.js');
  return ApiClient.fromState(state);
}

/** Polls the daemon until the disk's background copy is done; a failed copy is an error. */
async function waitForCopy(client: ApiClient, name: string, size: number, json?: boolean): Promise<DiskInfo> {
  const progress = createProgress('restore', size, { events: json });
  try {
    for (;;) {
      const { disks } = await client.call<{ disks: DiskInfo[] }>('GET', '/disks');
      const disk = disks.find((d) => d.name === name);
      if (!disk) throw new FleeceError('EDISK_NOT_FOUND', `disk '${name}' disappeared during its restore`);
      const status = disk.restore;
      if (!status || status.state === 'done') return disk;
      if (status.state === 'failed') throw new FleeceError('ERESTORE', `live restore of disk '${name}' failed: ${status.error ?? 'unknown error'}`);
      progress.update(status.doneBytes);
      await sleep(250);
    }
  } finally {
    progress.stop();
  }
}
