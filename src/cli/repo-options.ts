// How CLI verbs find and unlock the repository: --repo PATH or FLEECE_REPO; the passphrase from
// FLEECE_PASSWORD, a key file from --key-file / FLEECE_KEY_FILE, else a TTY prompt. The catalog
// lives in the repository directory (`.catalog.sqlite`, ignored by the store).

import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { UsageError } from '../core/errors.js';
import { catalogPathFor, openStore } from '../repo/stores/open-store.js';
import { Repository } from '../repo/repository.js';
import { decodeConfig } from '../repo/config.js';
import { RepoError, isNotFound } from '../repo/errors.js';
import type { Secret } from '../repo/keys.js';
import { promptPassword } from './password.js';

export interface RepoFlags {
  readonly repo?: string;
  readonly keyFile?: string;
  readonly json?: boolean;
}

export function addRepoOptions(command: Command): Command {
  return command
    .option('--repo <path>', 'repository directory (default: $FLEECE_REPO)')
    .option('--key-file <path>', 'key file for an encrypted repository (default: $FLEECE_KEY_FILE)');
}

export function repoPath(flags: RepoFlags): string {
  const path = flags.repo ?? process.env.FLEECE_REPO;
  if (!path) throw new UsageError('no repository given: use --repo PATH or set FLEECE_REPO');
  return path;
}

/** The secret from flags and environment; prompts only when `prompt` and nothing is set. */
export async function readSecret(flags: RepoFlags, prompt: string | undefined): Promise<Secret> {
  const keyFilePath = flags.keyFile ?? process.env.FLEECE_KEY_FILE;
  if (keyFilePath) {
    try {
      return { keyFile: await readFile(keyFilePath) };
    } catch (err) {
      throw new UsageError(`cannot read key file '${keyFilePath}': ${(err as Error).message}`, { cause: err });
    }
  }
  const passphrase = process.env.FLEECE_PASSWORD;
  if (passphrase !== undefined) return { passphrase };
  if (prompt) return { passphrase: await promptPassword(prompt) };
  return {};
}

/** Opens, unlocks and syncs the repository for a verb. */
export async function openRepo(flags: RepoFlags, options: { sync?: boolean } = {}): Promise<Repository> {
  const path = repoPath(flags);
  const store = await openStore(path);
  let encrypted = false;
  try {
    encrypted = decodeConfig(await store.get('config')).encryption !== null;
  } catch (err) {
    if (isNotFound(err)) throw new RepoError('ENOREPO', `no repository at '${path}': run \`fleece init --repo ${path}\` first`);
    throw err;
  }
  const secret = encrypted ? await readSecret(flags, 'repository passphrase: ') : {};
  const repo = await Repository.open(store, { secret, catalogPath: catalogPathFor(path) });
  if (options.sync ?? true) await repo.syncCatalog();
  return repo;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
