// Progress bars on a TTY (cli-progress); with `events`, JSON lines on stderr instead (one a
// second, for scripts and --json runs); silence otherwise, so stdout stays clean either way.

import cliProgress from 'cli-progress';
import { formatSize } from '../core/size.js';

export interface Progress {
  update(done: number, extra?: string): void;
  stop(): void;
}

export function createProgress(label: string, total: number, options: { bytes?: boolean; quiet?: boolean; events?: boolean } = {}): Progress {
  if (options.events) return jsonProgress(label, total);
  if (options.quiet || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const fmt = (n: number): string => (options.bytes === false ? String(n) : formatSize(n));
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% {done}/{all} {extra} eta {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { done: fmt(0), all: fmt(total), extra: '' });
  let last = 0;
  return {
    update(done, extra = '') {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      bar.update(done, { done: fmt(done), all: fmt(total), extra });
    },
    stop() {
      bar.stop();
    },
  };
}

/** `{"event":"progress","job":…,"done":…,"total":…}` lines on stderr, at most one a second. */
function jsonProgress(job: string, total: number): Progress {
  let last = 0;
  let stopped = false;
  return {
    update(done, extra) {
      const now = Date.now();
      if (stopped || (now - last < 1000 && done < total)) return;
      last = now;
      process.stderr.write(`${JSON.stringify({ event: 'progress', job, done, total, ...(extra ? { detail: extra } : {}) })}\n`);
    },
    stop() {
      stopped = true;
    },
  };
}
