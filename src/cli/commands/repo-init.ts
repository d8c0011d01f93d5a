// `fleece init`: creates a repository directory (optionally encrypted, with a chunk size).

import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { parseSize } from '../../core/size.js';
import { catalogPathFor, openStore } from '../../repo/stores/open-store.js';
import { Repository } from '../../repo/repository.js';
import { addRepoOptions, printJson, readSecret, repoPath, type RepoFlags } from '../repo-options.js';

interface InitFlags extends RepoFlags {
  readonly encrypt?: boolean;
  readonly chunkSize: string;
  readonly packSize: string;
}

export function registerInit(program: Command): void {
  addRepoOptions(program.command('init'))
    .description('create a repository')
    .option('--encrypt', 'encrypt with a passphrase ($FLEECE_PASSWORD or prompt) or --key-file')
    .option('--chunk-size <size>', 'chunk size, a power of two from 16K to 4M', '64K')
    .option('--pack-size <size>', 'target pack object size', '32M')
    .option('--json', 'print the config as json')
    .action(async (flags: InitFlags) => {
      const path = repoPath(flags);
      let secret = {};
      if (flags.encrypt) {
        secret = await readSecret(flags, 'new repository passphrase: ');
        if (!('keyFile' in secret) && !(secret as { passphrase?: string }).passphrase) throw new UsageError('an empty passphrase is not allowed');
      }
      const repo = await Repository.init(await openStore(path, { create: true }), {
        encrypt: flags.encrypt ?? false,
        secret,
        chunkSize: parseSize(flags.chunkSize, 'chunk size'),
        packSize: parseSize(flags.packSize, 'pack size'),
        catalogPath: catalogPathFor(path),
      });
      if (flags.json) printJson({ id: repo.config.id, chunkSize: repo.config.chunkSize, encrypted: repo.config.encryption !== null });
      else process.stdout.write(`created repository ${repo.config.id} at ${path} (chunk size ${repo.config.chunkSize}, ${repo.config.encryption ? 'encrypted' : 'not encrypted'})\n`);
      repo.close();
    });
}
