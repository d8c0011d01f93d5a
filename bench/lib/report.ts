// Writes one benchmark's section of BENCHMARKS.md, replacing the previous run of the same
// benchmark and leaving the others alone, so each `npm run bench -- NAME` updates its own table.

import { readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';

export interface BenchSection {
  readonly name: string;
  readonly title: string;
  /** Markdown body: tables, the commands used, notes. */
  readonly body: string;
}

const HEADER = `# Benchmarks

Written by \`npm run bench -- NAME\`; each section is replaced by the next run of its benchmark.
Peers run in the same invocation, alternated, and results are reported as ratios because the
machines are shared and noisy. Targets are the product's, stated next to each ratio.
`;

export async function writeSection(section: BenchSection, file = 'BENCHMARKS.md'): Promise<void> {
  let text = HEADER;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    // First benchmark run: start from the header.
  }
  const begin = `<!-- bench:${section.name} -->`;
  const end = `<!-- /bench:${section.name} -->`;
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node.js ${process.version}`;
  const block = `${begin}\n## ${section.title}\n\n_Run ${new Date().toISOString()} on ${machine}._\n\n${section.body.trim()}\n${end}`;
  const at = text.indexOf(begin);
  const stop = text.indexOf(end);
  text = at >= 0 && stop > at ? text.slice(0, at) + block + text.slice(stop + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  await writeFile(file, text);
}

/** A markdown table from a header row and rows of cells. */
export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** "1.23× (target ≥ 1.0×: met)" */
export function ratioCell(ratio: number, target?: { min?: number; max?: number }): string {
  const r = `${ratio.toFixed(2)}×`;
  if (!target) return r;
  const met = (target.min === undefined || ratio >= target.min) && (target.max === undefined || ratio <= target.max);
  const bound = target.min !== undefined ? `≥ ${target.min}×` : `≤ ${target.max}×`;
  return `${r} (target ${bound}: ${met ? 'met' : '**missed**'})`;
}
