// Picks the job source from the SOURCE argument: `disk:NAME` (a daemon disk), `nbd://…` or
// `nbd+unix://…` (any NBD export, optionally with a dirty bitmap), else a raw image file.

import { UsageError } from '../../core/errors.js';
import { openDiskJobSource } from './disk-job-source.js';
import { openFileJobSource } from './file-job-source.js';
import { openNbdJobSource } from './nbd-job-source.js';
import type { JobSource, OpenJobSourceOptions } from './job-source.js';

export async function openJobSource(spec: string, options: OpenJobSourceOptions): Promise<JobSource> {
  if (spec.startsWith('disk:')) {
    return openDiskJobSource(spec.slice('disk:'.length), options);
  }
  if (/^nbds?(\+unix)?:\/\//.test(spec)) return openNbdJobSource(spec, options);
  if (options.bitmap !== undefined) throw new UsageError('--bitmap applies to nbd:// sources only');
  return openFileJobSource(spec);
}
