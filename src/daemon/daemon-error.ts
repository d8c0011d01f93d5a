// Errors of the daemon's disk registry: unknown or duplicate disks and snapshots, a second
// daemon on the same state directory.

import { FleeceError } from '../core/errors.js';

export type DaemonErrorCode =
  | 'EDISK_NOT_FOUND'
  | 'EDISK_EXISTS'
  | 'ESNAPSHOT_NOT_FOUND'
  | 'ESNAPSHOT_EXISTS'
  | 'EDAEMON_RUNNING'
  | 'EDAEMON_UNREACHABLE';

export class DaemonError extends FleeceError {
  declare readonly code: DaemonErrorCode;

  constructor(code: DaemonErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
