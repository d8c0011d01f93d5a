// `fleece bitmap add|rm|list|clear|enable|disable|merge DISK NAME`: dirty bitmaps of a disk.

import type { Command } from 'commander';
import { ApiClient } from '../../api/api-client.js';
import { formatSize, parseSize } from '../../core/size.js';
import type { DiskInfo } from '../../daemon/daemon.js';
import { print } from './disk.js';

interface Opts {
  state?: string;
  json?: boolean;
}

const path = (disk: string, bitmap?: string) => `/disks/${encodeURIComponent(disk)}/bitmaps${bitmap === undefined ? '' : `/${encodeURIComponent(bitmap)}`}`;

export function registerBitmap(program: Command): void {
  const bitmap = program.command('bitmap').description('dirty bitmaps of a disk (exported as qemu:dirty-bitmap:NAME)');
  const common = (c: Command) => c.option('--state <dir>', 'daemon state directory (default: $FLEECE_STATE)').option('--json', 'JSON output');

  common(bitmap.command('add <disk> <name>').description('start tracking writes in a new bitmap'))
    .option('--granularity <size>', 'bytes per bit, a power of two >= 4K', '64K')
    .option('--disabled', 'create disabled')
    .action(async (disk: string, name: string, opts: Opts & { granularity: string; disabled?: boolean }) => {
      const reply = await ApiClient.fromState(opts.state).call('POST', path(disk), { name, granularity: parseSize(opts.granularity, 'granularity'), disabled: opts.disabled === true });
      print(opts, reply, `added bitmap ${name} to ${disk}`);
    });

  common(bitmap.command('rm <disk> <name>').description('remove a bitmap (also an inconsistent one)')).action(async (disk: string, name: string, opts: Opts) => {
    print(opts, await ApiClient.fromState(opts.state).call('DELETE', path(disk, name)), `removed bitmap ${name}`);
  });

  common(bitmap.command('list <disk>').description('list bitmaps')).action(async (disk: string, opts: Opts) => {
    const { bitmaps } = await ApiClient.fromState(opts.state).call<{ bitmaps: DiskInfo['bitmaps'] }>('GET', path(disk));
    const lines = bitmaps.map(
      (b) => `${b.name}\t${formatSize(b.granularity)}\t${b.inconsistent ? 'INCONSISTENT' : b.enabled ? 'enabled' : 'disabled'}\t${b.dirtyBytes === null ? '-' : formatSize(b.dirtyBytes)} dirty`,
    );
    print(opts, bitmaps, lines.join('\n'));
  });

  for (const action of ['clear', 'enable', 'disable'] as const) {
    common(bitmap.command(`${action} <disk> <name>`).description(`${action} a bitmap`)).action(async (disk: string, name: string, opts: Opts) => {
      print(opts, await ApiClient.fromState(opts.state).call('POST', `${path(disk, name)}/${action}`), `${action}: ${name}`);
    });
  }

  common(bitmap.command('merge <disk> <target> <sources...>').description('OR source bitmaps into target')).action(
    async (disk: string, target: string, sources: string[], opts: Opts) => {
      print(opts, await ApiClient.fromState(opts.state).call('POST', `${path(disk, target)}/merge`, { from: sources }), `merged ${sources.join(', ')} into ${target}`);
    },
  );
}
