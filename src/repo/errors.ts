// Errors of the repository layer. Codes are stable: the CLI maps them to exit statuses and
// tests assert on them (a wrong passphrase, a damaged object, an ambiguous id prefix).

import { FleeceError } from '../core/errors.js';

export type RepoErrorCode =
  | 'ENOTFOUND' // a store key, backup id or blob does not exist
  | 'ECORRUPT' // stored bytes fail a checksum, authentication or hash check
  | 'EBADKEY' // wrong passphrase or key file
  | 'ENOREPO' // no repository config at the location
  | 'EEXIST' // init over an existing repository
  | 'EAMBIGUOUS' // an id prefix matches several backups
  | 'ELOCKED' // another gc holds the gc lock
  | 'ELEASE' // a running backup lost its lease (could not refresh it in time)
  | 'EINVALID'; // a bad key name, config value or argument

export class RepoError extends FleeceError {
  declare readonly code: RepoErrorCode;

  constructor(code: RepoErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** True when `err` says a key/blob/backup is missing (stores and the repository agree on it). */
export function isNotFound(err: unknown): boolean {
  return err instanceof FleeceError && err.code === 'ENOTFOUND';
}
