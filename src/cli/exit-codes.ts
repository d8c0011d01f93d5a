// The one place that maps errors to process exit statuses.

import { FleeceError } from '../core/errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1; // the operation failed (I/O, corruption, a refused request)
export const EXIT_USAGE = 2; // bad arguments or input; nothing was done
export const EXIT_ABORTED = 130; // cancelled by SIGINT/SIGTERM; state left consistent

export function exitCodeFor(err: unknown): number {
  if (err instanceof FleeceError) {
    if (err.code === 'EUSAGE') return EXIT_USAGE;
    if (err.code === 'EABORTED') return EXIT_ABORTED;
  }
  // Node's own AbortError (timers/promises, fetch, streams) once our signal fired.
  if (err instanceof Error && err.name === 'AbortError') return EXIT_ABORTED;
  return EXIT_FAILURE;
}
