// Repository benchmark: fleece (plain and encrypted) against restic 0.14 and borg 1.2 on the same
// sparse image in one run: full backup, backup after 1 % scattered writes, restore, and ten
// clones with their own 1 % writes. Times, stored bytes (du) and peak RSS, ratios to restic.

import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../src/core/size.js';
import { makeBenchImage, scatterWrites } from './repo-images.js';
import { borgTool, fleeceTool, freshDir, resticTool, storedBytes, type Measured, type Tool } from './repo-tools.js';
import { syncAll } from './lib/procs.js';
import { median, ratioCell, table, writeSection } from './lib/report.js';

const MIB = 2 ** 20;

/** Profile notes (\`node --cpu-prof\` on the CLI, workers included, 1 GiB version of the image). */
const WHERE_THE_TIME_GOES = `Where the time goes (\`perf record\` per thread, \`node --cpu-prof\` and A/B runs of
\`fleece backup\` and \`fleece restore\` of this 4 GiB image, worker threads included; wall clock on
this shared machine swings 5-20% between runs, restic's with it): a full backup costs ~5 CPU-s
(restic 0.14, by time(1): ~21). zstd level 1 on the text quarter takes ~2.8 of them (~375 MB/s
per core on this text; the \`zstd -b1 -B64K\` CLI gets ~335, and negative levels or hashLog/minMatch
settings are no faster here), BLAKE3 chunk ids ~0.55, AES-256-GCM ~0.3 when encrypted, V8's
optimizing compiler ~0.3 (on its own threads), the main thread ~0.5 (SQLite ~0.1 of it). The
incompressible quarter is bound by the store instead: packs go out with O_DIRECT at 1.4-1.8 GB/s
here, and read in disk order it left the workers half idle for ~0.8 s. So a backup goes through
the disk in two lanes that take halves of each other's work (work-lanes.ts): the random quarter
now overlaps the zeros and then the text, and both cores stay busy from the first batch to the
last (A/B: 2.83 s vs 2.94 s plain, 2.90 s vs 3.06 s encrypted). Other costs removed: a pack's
buffer waited for the fsync and rename of its file before the worker could refill it (a put took
55-99 ms with three in flight, its write 35-56 ms); it now goes back once written (A/B: 2.96 s vs
3.08 s); every pack was copied through the O_DIRECT bounce buffer (packs are now built at a page
boundary and written from where they are: ~0.1 CPU-s less); the workers loaded their modules only
after the passphrase's scrypt and the catalog (they now start first thing); reads of the image
into buffers that V8 had placed 16 bytes into a page (malloc's chunk header), where the kernel's
copy from the page cache runs ~5x slower on this AMD EPYC (now page-aligned); CRC32 through
Node's zlib at ~2-3 GB/s (now ~9 with carry-less multiplication); raw chunks copied into packs
word by word, as V8 copies between SharedArrayBuffers (now memcpy); every pack crossing from a
worker as a freshly transferred buffer, which V8 answered with a full GC about twice per pack;
pack ids hashing every stored byte a second time; a compressibility probe before every chunk.
Tried and not kept: more uploads in flight (6 or 8: no faster once buffers come back early, and 8
took peak RSS to 506 MiB), larger batches or twice the batches in flight (within noise), and
\`node --no-opt\` (1.5-3% faster for a backup or a restore, but process-wide). First-touch memory
still weighs: this VM hands freed memory back to its host, and memory it must fetch again costs
1-14 µs per KiB on first touch (the first read of the image's 2 GiB of holes into an empty page
cache cost 5 s of system time). Process start and module loading take ~0.1 s before the first
read.
A restore of (2)'s backup is CPU-bound: ~3.0 CPU-s with both cores ~90% busy (\`perf record -a\`:
fleece's threads 93% of all samples, the kernel's own threads 3%). zstd decompression takes
~0.75 of them (the \`zstd\` CLI decompresses this text at 1.3 GB/s per core), BLAKE3 verification
~0.3, the kernel ~1.0 (copies into and out of the page cache, ext4's per-block bookkeeping,
write-back and eviction), V8 ~0.8 (its optimizing compiler ~0.3 on its own threads). The chunk
workers read their spans from the pack files themselves (a pread on their own thread), check and
decompress them, and write the plaintexts with \`pwritev\`, at most 512 KiB per call; the main
thread only plans (index pages, catalog lookups). Writes into one file take turns (ext4 lets one
buffered write into an inode at a time; the workers wait under a shared mutex instead of
spinning on the inode lock, ~9% of the CPU before), so the random quarter goes at one writer's
pace, ~1.4 GB/s. Costs removed: the main thread reading every span through libuv's pool (an open,
a read and a close per span, each waking a pool thread and then the main thread) and lending it
to a worker (1.70-1.79 s vs 1.83-1.94 s per restore, 0.25 CPU-s less); ext4's delayed allocation
reserving and tracking each 4 KiB block of a write into a hole (runs of 256 KiB or more are now
allocated with one fallocate just before they are written: 1.89-1.97 s vs 2.02-2.26 s, system
time 1.09-1.21 vs 1.22-1.42 s); importing the CommonJS native packages (BLAKE3, CRC32, zstd) from ES modules, where Node
scanned their large loaders for export names (importing them took ~40 ms per thread against ~7
through require, in the main thread and each worker); loading every command's module when one runs
(\`fleece list\` 0.09 s vs 0.125 s); all-zero pages inside data chunks copied into the image (after
(2), ~300 MiB of the 64 KiB chunks each hold one 4 KiB write among zeros: they are left as holes);
a plaintext buffer sized for a whole span, which grew to 32 MiB per worker on spans of such
chunks (they compress to little), memory each restore touched for the first time (now 4 MiB,
opened into group by group: peak RSS 143 MiB instead of 214-291, 1.59-1.73 s vs 1.77-1.92 s).
The image is written back and dropped from the page cache every 64 MiB, so later writes reuse
freed pages: this VM hands freed memory back to its host, and without it the restore of (1)'s
backup took 4.3-6.4 s instead of 1.7-2.0 s. Restores swing most with first-touch memory (the
same restore took 8.3 s with 7.7 s of system time right after a backup, 5.5 s with 3.7 s the next
time; 0.1 s more right after 4 GiB of another file was deleted), restic's even more: 4.3 s with
0.8 s of system time, 11.7 s with 11.8 s, on the same machine within minutes.
Measured and not kept: the image written with O_DIRECT from the workers, into holes or into
preallocated extents, synchronously or through a writer thread per worker (3.0-3.3 s vs
1.9-2.1 s: on this VM each request costs a virtio notification, and the workers wait on the
device); the random and text quarters interleaved (1.61-1.76 s vs 1.58-1.80 s), and two lanes as
in backup (2.07 s vs 2.06 s); spans of 2 or 8 MiB instead of 4, writes of 128 KiB or 2 MiB
instead of 512 KiB, twice the spans in flight, pack files kept open across spans, write-back
without the eviction: all within noise; dropping the packs' pages once read (later restores
then read every pack from disk again); reading the packs with O_DIRECT (~0.5 s less system time,
no faster on the clock). Encryption (AES-256-GCM) adds ~22 µs per 64 KiB blob sealed (~3 GB/s,
the cipher's own speed here) and about as much per blob opened: the addon keeps one expanded key
per worker and seals in place in the pack. Through node:crypto, a Cipheriv per blob with its
output copied into the pack, it had cost ~65 µs (~1 GB/s), and encrypted backups ran 1.3-1.6 s
behind plain ones. Which of the two fleece configurations runs faster in
one run is mostly noise: they do the same work but for the cipher (~0.1-0.3 s of a backup or a
restore), and the same backup repeated here ranged 2.8-3.1 s.`;
const SIZE = Math.max(64 * MIB, Math.floor(parseSize(process.env.BENCH_SIZE ?? '4G', 'BENCH_SIZE') / (16 * MIB)) * 16 * MIB);
const CLONES = Number(process.env.BENCH_CLONES ?? 10);
/** Runs of (1) and (3) per tool; the median is reported. */
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const RSS_LIMIT = 512 * MIB;

interface Row {
  fullSeconds: number[];
  fullRss: number[];
  fullStored?: number;
  second?: Measured;
  secondAdded?: number;
  restoreSeconds: number[];
  restoreRss: number[];
  cloneSeconds: number[];
  cloneRss: number[];
  totalStored?: number;
}

/**
 * Before each measured command: flush every dirty page (the image just written, the previous
 * tool's restore) so no tool pays for another's writeback, then read `path` once (the image
 * before a backup, holes costing nothing; the tool's repository before a restore) so every tool
 * starts from the page cache. fleece writes its packs with O_DIRECT, which leaves them out of the
 * cache where restic's and borg's stay: without the read, its first restore after a backup would
 * be the only one to read its repository from disk.
 */
function settle(path?: string): void {
  syncAll();
  if (path) spawnSync('sh', ['-c', 'find "$1" -type f -exec cat {} + > /dev/null', 'sh', path], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function sameFile(a: string, b: string): boolean {
  return spawnSync('cmp', ['--quiet', a, b]).status === 0;
}

const mib = (bytes: number): string => (bytes / MIB).toFixed(bytes < 10 * MIB ? 1 : 0);
const sec = (s: number): string => s.toFixed(2);

export async function runRepoBench(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'fleece-bench-repo-'));
  const loadBefore = loadavg();
  try {
    const image = join(work, 'vm.img');
    const makers: ((dir: string) => Tool)[] = [(d) => fleeceTool(d, false), (d) => fleeceTool(d, true), resticTool, borgTool];
    const tools = makers.map((make) => make(work));
    const rows = new Map<Tool, Row>(tools.map((t) => [t, { fullSeconds: [], fullRss: [], restoreSeconds: [], restoreRss: [], cloneSeconds: [], cloneRss: [] }]));
    const log = (text: string): void => void process.stderr.write(`repo bench: ${text}\n`);
    log(`image of ${mib(SIZE)} MiB in ${work}`);
    await makeBenchImage(image, SIZE);

    // (1) RUNS times per tool, tools alternated: the first runs go into throwaway repositories,
    // the last into the one the later steps build on.
    for (let run = 0; run < RUNS; run++) {
      const last = run === RUNS - 1;
      const scratch = join(work, `full-${run}`);
      if (!last) await freshDir(scratch);
      for (let t = 0; t < tools.length; t++) {
        const tool = last ? tools[t]! : makers[t]!(scratch);
        tool.init();
        settle(image);
        const row = rows.get(tools[t]!)!;
        const measured = tool.backup(image, 'vm');
        row.fullSeconds.push(measured.seconds);
        row.fullRss.push(measured.peakRss);
        row.fullStored = storedBytes(tool.repo);
        log(`${tool.name}: full backup ${sec(measured.seconds)} s, ${mib(row.fullStored)} MiB stored`);
      }
      if (!last) await rm(scratch, { recursive: true, force: true });
    }
    const writes = await scatterWrites(image, SIZE, 0.01);
    for (const tool of tools) {
      settle(image);
      const row = rows.get(tool)!;
      row.second = tool.backup(image, 'vm');
      row.secondAdded = storedBytes(tool.repo) - row.fullStored!;
      log(`${tool.name}: second backup ${sec(row.second.seconds)} s, ${mib(row.secondAdded)} MiB added`);
    }
    for (let run = 0; run < RUNS; run++) {
      for (const tool of tools) {
        const dir = await freshDir(join(work, 'restore'));
        settle(tool.repo);
        const row = rows.get(tool)!;
        const measured = tool.restore('vm', dir);
        row.restoreSeconds.push(measured.seconds);
        row.restoreRss.push(measured.peakRss);
        if (tool.name.startsWith('fleece') && !sameFile(image, join(dir, 'out.img'))) throw new Error(`${tool.name} restored an image that differs from the source`);
        log(`${tool.name}: restore ${sec(measured.seconds)} s`);
        await rm(dir, { recursive: true, force: true });
      }
    }
    const clone = join(work, 'clone.img');
    for (let i = 0; i < CLONES; i++) {
      spawnSync('cp', ['--sparse=always', image, clone]);
      await scatterWrites(clone, SIZE, 0.01);
      for (const tool of tools) {
        settle(clone);
        const run = tool.backup(clone, `clone${i}`);
        rows.get(tool)!.cloneSeconds.push(run.seconds);
        rows.get(tool)!.cloneRss.push(run.peakRss);
      }
      log(`clone ${i + 1}/${CLONES} backed up by every tool`);
    }
    for (const tool of tools) rows.get(tool)!.totalStored = storedBytes(tool.repo);

    const loadAfter = loadavg();
    await writeSection({ name: 'repo', title: 'Repository: fleece vs restic 0.14 and borg 1.2', body: report(tools, rows, writes, loadBefore, loadAfter) });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function report(tools: Tool[], rows: Map<Tool, Row>, writes: number, loadBefore: number[], loadAfter: number[]): string {
  const [fleece, fleeceEnc, restic] = tools.map((t) => rows.get(t)!) as [Row, Row, Row];
  const cells = (f: (r: Row) => string): string[] => tools.map((t) => f(rows.get(t)!));
  const peak = (r: Row): number => Math.max(...r.fullRss, r.second!.peakRss, ...r.cloneRss);
  const full = (r: Row): number => median(r.fullSeconds);
  const restore = (r: Row): number => median(r.restoreSeconds);
  const restorePeak = (r: Row): number => Math.max(...r.restoreRss);
  const each = (list: number[]): string => list.map(sec).join(', ');
  const results = table(['', ...tools.map((t) => t.name)], [
    [`(1) full backup, median s`, ...cells((r) => sec(full(r)))],
    [`(1) full backup, each run, s`, ...cells((r) => each(r.fullSeconds))],
    ['(1) full backup, MiB/s of image', ...cells((r) => (SIZE / MIB / full(r)).toFixed(0))],
    ['(1) stored, MiB', ...cells((r) => mib(r.fullStored!))],
    ['(2) backup after 1 % writes, s', ...cells((r) => sec(r.second!.seconds))],
    ['(2) added, MiB', ...cells((r) => mib(r.secondAdded!))],
    ['(3) restore, median s', ...cells((r) => sec(restore(r)))],
    ['(3) restore, each run, s', ...cells((r) => each(r.restoreSeconds))],
    [`(4) clone backup, median s`, ...cells((r) => sec(median(r.cloneSeconds)))],
    [`(4) stored after ${CLONES} clones, MiB`, ...cells((r) => mib(r.totalStored!))],
    ['peak RSS of a backup, MiB', ...cells((r) => mib(peak(r)))],
    ['peak RSS of the restore, MiB', ...cells((r) => mib(restorePeak(r)))],
  ]);
  const ratioRows = (name: string, r: Row): (string | number)[][] => [
    [`(1) backup speed ${name} / restic`, ratioCell(full(restic) / full(r), { min: 3 })],
    [`(1) stored ${name} / restic`, ratioCell(r.fullStored! / restic.fullStored!, { max: 1.1 })],
    [`(2) added ${name} / restic`, ratioCell(r.secondAdded! / restic.secondAdded!, { max: 0.6 })],
    [`(3) restore speed ${name} / restic`, ratioCell(restore(restic) / restore(r), { min: 3 })],
    [`(4) total stored ${name} / restic`, ratioCell(r.totalStored! / restic.totalStored!, { max: 0.6 })],
    [`peak RSS ${name} (backup, restore)`, `${mib(peak(r))} / ${mib(restorePeak(r))} MiB (target ≤ ${mib(RSS_LIMIT)} MiB: ${Math.max(peak(r), restorePeak(r)) <= RSS_LIMIT ? 'met' : '**missed**'})`],
  ];
  const ratios = table(['ratio', 'value'], [...ratioRows('fleece', fleece), ...ratioRows('fleece encrypted', fleeceEnc)]);
  const load = (l: number[]): string => l.map((v) => v.toFixed(2)).join(' ');
  return `${results}

${ratios}

Image: ${mib(SIZE)} MiB sparse raw file, the first quarter random bytes, the second quarter
compressible text (random words from a small vocabulary, ~3× with zstd), the second half **holes**
(never written, so SEEK_DATA/SEEK_HOLE report it; tools that read it get zeros). (2) rewrites
${writes} random 4 KiB-aligned blocks (1 % of the image, holes included) with random bytes; no
dirty map is given to any tool, so each reads the whole file. (3) restores the backup of (2) into
an empty directory (fleece's output is compared with the source). (4) copies the image of (2)
${CLONES} times, each copy with its own 1 % scattered writes, backed up into the same repository;
the total is the repository after (1), (2) and all clones. Before every measured command the
bench runs \`sync\` (so no tool pays for the writeback of the image or of another tool's restore)
and every backup starts with the image in the page cache (read once just before), every restore
with the tool's repository in it (read once just before: fleece writes packs with O_DIRECT, so they
are not cached after a backup, where restic's and borg's are; before this rule fleece's first
restore after a backup read them from disk, 2.6-3.3 s against 1.8-2.4 s for the next ones). Backups are
durable in all three tools (each fsyncs what it stores); restores are not fsynced by any. Times are wall clock of the whole command, including
process start. Stored bytes: \`du -sb\` of the repository directory, without fleece's derived
catalog (\`.catalog.sqlite\`, a cache like restic's and borg's, which live outside the repository).
Peak RSS: "Maximum resident set size" from \`/usr/bin/time -v\` (fleece's worker threads share its
process). (1) and (3): ${RUNS} runs per tool, tools alternated in the order of the table, median
reported (the first runs of (1) go into throwaway repositories); (2) one run per tool; (4) the
median of the ${CLONES} clone backups.

Commands:
${tools.map((t) => `- ${t.name}: ${t.commands}`).join('\n')}

Load average (1, 5, 15 min): ${load(loadBefore)} before, ${load(loadAfter)} after, on 2 shared cores.

${WHERE_THE_TIME_GOES}`;
}
