// `fleece snapshot create|list|release`: point-in-time views of a disk, exported read-only over
// NBD as DISK@SNAP while copy-before-write keeps them consistent.

import type { Command } from 'commander';
import { resolve } from 'node:path';
import { ApiClient } from '../../api/api-client.js';
import { UsageError } from '../../core/errors.js';
import { formatSize, parseSize } from '../../core/size.js';
import { print } from './disk.js';

interface Opts {
  state?: string;
  json?: boolean;
}

function splitRef(ref: string): [string, string] {
  const at = ref.lastIndexOf('@');
  if (at <= 0 || at === ref.length - 1) throw new UsageError(`invalid snapshot '${ref}': expected DISK@SNAP`);
  return [ref.slice(0, at), ref.slice(at + 1)];
}

export function registerSnapshot(program: Command): void {
  const snapshot = program.command('snapshot').description('point-in-time snapshots of live disks (NBD export DISK@SNAP)');
  const common = (c: Command) => c.option('--state <dir>', 'daemon state directory (default: $FLEECE_STATE)').option('--json', 'JSON output');

  common(snapshot.command('create <disk>').description('take a snapshot between two guest requests'))
    .option('--name <snap>', 'snapshot name (default snapN)')
    .option('--bitmap <name>', 'protect only the clusters dirty in this bitmap')
    .option('--ram-cache <size>', 'RAM for old clusters', '256M')
    .option('--spill-dir <dir>', 'spill old clusters to a file here once RAM is full')
    .option('--spill-max <size>', 'largest spill file', '10G')
    .option('--on-full <policy>', 'when caches are full: break-snapshot (guest never waits) or wait', 'break-snapshot')
    .option('--read-once', 'each read through the snapshot releases the clusters it covered')
    .action(async (disk: string, opts: Opts & { name?: string; bitmap?: string; ramCache: string; spillDir?: string; spillMax: string; onFull: string; readOnce?: boolean }) => {
      const reply = await ApiClient.fromState(opts.state).call<{ name: string; export: string }>('POST', `/disks/${encodeURIComponent(disk)}/snapshots`, {
        name: opts.name,
        bitmap: opts.bitmap,
        ramCache: parseSize(opts.ramCache, '--ram-cache'),
        spillDir: opts.spillDir === undefined ? undefined : resolve(opts.spillDir),
        spillMax: parseSize(opts.spillMax, '--spill-max'),
        onFull: opts.onFull,
        readOnce: opts.readOnce === true,
      });
      print(opts, reply, `created snapshot ${reply.name}, NBD export '${reply.export}'`);
    });

  common(snapshot.command('list').description('list live snapshots with their cache usage')).action(async (opts: Opts) => {
    const { snapshots } = await ApiClient.fromState(opts.state).call<{ snapshots: Record<string, unknown>[] }>('GET', '/snapshots');
    const lines = snapshots.map((s) => {
      const cache = s.cache as { ramBytes: number; spillBytes: number };
      return `${String(s.export)}\tcopies ${String(s.copies)}\tram ${formatSize(cache.ramBytes)}\tspill ${formatSize(cache.spillBytes)}${s.broken ? `\tBROKEN: ${String(s.broken)}` : ''}`;
    });
    print(opts, snapshots, lines.join('\n'));
  });

  common(snapshot.command('release <disk@snap>').description('end copy-before-write and free the cache'))
    .option('--keep-bitmap <name>', 'keep a bitmap of everything written since the snapshot')
    .action(async (ref: string, opts: Opts & { keepBitmap?: string }) => {
      const [disk, snap] = splitRef(ref);
      const reply = await ApiClient.fromState(opts.state).call('POST', `/disks/${encodeURIComponent(disk)}/snapshots/${encodeURIComponent(snap)}/release`, {
        keepBitmap: opts.keepBitmap,
      });
      print(opts, reply, `released ${ref}${opts.keepBitmap ? `, kept bitmap ${opts.keepBitmap}` : ''}`);
    });
}
