// Human sizes for the CLI and config: "64K", "10G", "1.5T", "4096" (bytes). Binary units.

import { UsageError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1, B: 1,
  K: 2 ** 10, KB: 2 ** 10, KIB: 2 ** 10,
  M: 2 ** 20, MB: 2 ** 20, MIB: 2 ** 20,
  G: 2 ** 30, GB: 2 ** 30, GIB: 2 ** 30,
  T: 2 ** 40, TB: 2 ** 40, TIB: 2 ** 40,
  P: 2 ** 50, PB: 2 ** 50, PIB: 2 ** 50,
};

/** Parses a size such as "64K" or "10G" into bytes; throws UsageError quoting the input. */
export function parseSize(text: string, what = 'size'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? UNITS[match[2]!.toUpperCase()] : undefined;
  if (!match || unit === undefined) {
    throw new UsageError(`invalid ${what} '${text}': expected a number with an optional unit K, M, G, T or P`);
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`invalid ${what} '${text}': not a whole number of bytes below 2^53`);
  }
  return bytes;
}

/** Formats bytes for people: 1536 -> "1.5 KiB". */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[i]}`;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}
