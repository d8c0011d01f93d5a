// `fleece serve`: offers a raw image file (or a RAM disk) over NBD until SIGINT/SIGTERM, printing
// the URI clients connect to. Default listener: 127.0.0.1:10809 (the IANA NBD port).

import { access } from 'node:fs/promises';
import { basename, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import type { BlockDevice } from '../../block/block-device.js';
import { MemoryDevice } from '../../block/drivers/memory-device.js';
import { RawFileDevice } from '../../block/drivers/raw-file-device.js';
import { UsageError } from '../../core/errors.js';
import { parseSize } from '../../core/size.js';
import { NbdServer } from '../../nbd/index.js';
import { addListenOptions, listenAndPrint, waitForSignal } from '../nbd-listen.js';

interface ServeOptions {
  readonly create?: string;
  readonly memory?: string;
  readonly export?: string;
  readonly description?: string;
  readonly listen?: string;
  readonly socket?: string;
  readonly readOnly?: boolean;
  readonly verbose?: boolean;
}

export function registerServe(program: Command): void {
  addListenOptions(program.command('serve'))
    .description('serve a raw disk image (or a RAM disk) over NBD until interrupted')
    .argument('[image]', 'raw image file to serve')
    .option('--create <size>', 'create the image as a sparse file of this size if it does not exist')
    .option('--memory <size>', 'serve a sparse RAM disk of this size instead of an image')
    .option('--export <name>', 'export name (default: the image file name without extension; clients asking for "" get it too)')
    .option('--description <text>', 'export description shown by nbdinfo --list')
    .option('--read-only', 'refuse writes')
    .option('--verbose', 'log connection errors on stderr')
    .action(async (image: string | undefined, options: ServeOptions) => serve(image, options));
}

async function serve(image: string | undefined, options: ServeOptions): Promise<void> {
  const device = await openDevice(image, options);
  const name = options.export ?? (image ? basename(image, extname(image)) : 'memory');
  const server = new NbdServer({ log: options.verbose ? (m) => process.stderr.write(`${m}\n`) : () => {} });
  try {
    server.addExport({ name, device, readOnly: options.readOnly ?? false, description: options.description ?? (image ? resolve(image) : 'RAM disk') });
    await listenAndPrint(server, options, name);
    await waitForSignal();
  } finally {
    await server.close();
    await device.close();
  }
}

async function openDevice(image: string | undefined, options: ServeOptions): Promise<BlockDevice> {
  if (options.memory !== undefined) {
    if (image !== undefined) throw new UsageError(`give either an image ('${image}') or --memory, not both`);
    return new MemoryDevice(parseSize(options.memory, 'memory size'), { readOnly: options.readOnly ?? false });
  }
  if (image === undefined) throw new UsageError('missing image: give an IMAGE path or --memory SIZE');
  const exists = await access(image).then(() => true, () => false);
  if (!exists && options.create === undefined) throw new UsageError(`image '${image}' does not exist (add --create SIZE to create it)`);
  const create = !exists && options.create !== undefined ? parseSize(options.create, 'image size') : undefined;
  return RawFileDevice.open(image, { readOnly: options.readOnly ?? false, ...(create !== undefined ? { create } : {}) });
}
