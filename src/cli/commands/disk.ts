// `fleece disk create|list|rm`: manage the disks a running daemon hosts.

import type { Command } from 'commander';
import { resolve } from 'node:path';
import { ApiClient } from '../../api/api-client.js';
import { formatSize, parseSize } from '../../core/size.js';
import type { DiskInfo } from '../../daemon/daemon.js';

interface StateOpts {
  state?: string;
  json?: boolean;
}

export function print(opts: StateOpts, json: unknown, text: string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : text.endsWith('\n') || text === '' ? text : `${text}\n`);
}

export function registerDisk(program: Command): void {
  const disk = program.command('disk').description('disks hosted by the daemon (sparse raw images, served over NBD)');
  const common = (c: Command) => c.option('--state <dir>', 'daemon state directory (default: $FLEECE_STATE)').option('--json', 'JSON output');

  common(disk.command('create <name>').description('create a sparse disk'))
    .option('--size <size>', 'size, e.g. 10G')
    .option('--from <image>', 'copy the content of a raw image')
    .action(async (name: string, opts: StateOpts & { size?: string; from?: string }) => {
      const info = await ApiClient.fromState(opts.state).call<DiskInfo>('POST', '/disks', {
        name,
        size: opts.size === undefined ? undefined : parseSize(opts.size),
        from: opts.from === undefined ? undefined : resolve(opts.from),
      });
      print(opts, info, `created disk ${info.name} (${formatSize(info.size)}), NBD export '${info.export}'`);
    });

  common(disk.command('list').description('list disks')).action(async (opts: StateOpts) => {
    const { disks } = await ApiClient.fromState(opts.state).call<{ disks: DiskInfo[] }>('GET', '/disks');
    const lines = disks.map((d) => `${d.name}\t${formatSize(d.size)}\tbitmaps: ${d.bitmaps.map((b) => b.name).join(',') || '-'}\tsnapshots: ${d.snapshots.join(',') || '-'}${d.restore ? `\trestore: ${d.restore.state} ${d.restore.percent}% of ${d.restore.backup.slice(0, 8)}` : ''}`);
    print(opts, disks, lines.join('\n'));
  });

  common(disk.command('rm <name>').description('remove a disk and its files')).action(async (name: string, opts: StateOpts) => {
    const reply = await ApiClient.fromState(opts.state).call('DELETE', `/disks/${encodeURIComponent(name)}`);
    print(opts, reply, `removed disk ${name}`);
  });
}
