// NBD server benchmark: fio's nbd engine against `fleece serve` and qemu-nbd (default and
// --aio=io_uring), all serving the same raw file over a Unix socket, alternated, median of N.

import { randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { median, ratioCell, table, writeSection } from './lib/report.js';
import { dropFileCache, runFio, startServer, syncAll, type FioResult } from './lib/procs.js';

const FILE_SIZE = 512 * 2 ** 20;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);

interface Peer {
  readonly name: string;
  start(file: string, socket: string): ReturnType<typeof startServer>;
}

const CLI = resolve('dist/src/cli/fleece.cjs');
const peers: Peer[] = [
  { name: 'fleece', start: (f, s) => startServer(process.execPath, [CLI, 'serve', f, '--socket', s, '--export', 'bench'], s) },
  { name: 'qemu-nbd', start: (f, s) => startServer('qemu-nbd', ['-f', 'raw', '-t', '-x', 'bench', '-k', s, f], s) },
  { name: 'qemu-nbd io_uring', start: (f, s) => startServer('qemu-nbd', ['-f', 'raw', '-t', '--aio=io_uring', '-x', 'bench', '-k', s, f], s) },
];

interface Workload {
  readonly name: string;
  readonly args: string[];
  readonly side: 'read' | 'write';
  readonly metric: 'iops' | 'MB/s';
}

const workloads: Workload[] = [
  { name: '4 KiB random read, QD16', args: ['--rw=randread', '--bs=4k', '--iodepth=16'], side: 'read', metric: 'iops' },
  { name: '4 KiB random write, QD16', args: ['--rw=randwrite', '--bs=4k', '--iodepth=16'], side: 'write', metric: 'iops' },
  { name: '1 MiB sequential read, QD16', args: ['--rw=read', '--bs=1M', '--iodepth=16'], side: 'read', metric: 'MB/s' },
];

async function makeImage(path: string): Promise<void> {
  const file = await open(path, 'w');
  const block = Buffer.alloc(2 ** 20);
  try {
    for (let offset = 0; offset < FILE_SIZE; offset += block.length) {
      randomFillSync(block);
      await file.write(block, 0, block.length, offset);
    }
    await file.sync();
  } finally {
    await file.close();
  }
}

async function measure(peer: Peer, work: Workload, file: string, dir: string, cold: boolean): Promise<FioResult> {
  const socket = join(dir, `${peer.name.replace(/\W/g, '-')}.sock`);
  const server = await peer.start(file, socket);
  try {
    syncAll();
    if (cold) dropFileCache(file);
    const uri = `nbd+unix:///bench?socket=${socket}`;
    return runFio(
      ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--size=${FILE_SIZE}`, '--time_based', `--runtime=${SECONDS}`, '--numjobs=1', ...work.args],
      work.side,
    );
  } finally {
    await server.stop();
  }
}

const value = (r: FioResult, w: Workload) => (w.metric === 'iops' ? r.iops : r.bytesPerSecond / 1e6);
const fmt = (v: number, w: Workload) => (w.metric === 'iops' ? `${(v / 1000).toFixed(1)}k IOPS` : `${v.toFixed(0)} MB/s`);

// What `node --cpu-prof` of `fleece serve` showed under fio (see the body text below).
const WHERE_THE_TIME_GOES =
  'Where the time goes (`node --cpu-prof` and `perf record` on `fleece serve` under fio, 2-core VM shared with other work; ' +
  'server CPU per request from /proc): on warm 4 KiB random reads the server uses ~0.9 of a core and fio most of the other, ' +
  'so server CPU per request decides the IOPS. Almost half of it is the kernel: the RWF_NOWAIT `preadv2` copying from the ' +
  'page cache, the corked `writev` of the replies (one per loop turn) and the socket reads. Two costs are gone: each ' +
  'reply was a fresh 4 KiB ArrayBuffer (malloc, V8\'s external-memory bookkeeping and sweeping: about a fifth of the ' +
  'request), now a pooled one, and a cached read went through four async functions and their promises, now none ' +
  '(`readNow`: a read the page cache serves is answered before the next request is parsed). Together: ~15 -> ~10 µs of ' +
  'server CPU per cached 4 KiB read (qemu-nbd io_uring: 12-19). Random writes used to spend 42% of their busy time ' +
  'handing every write to the libuv pool (ext4 refuses buffered RWF_NOWAIT writes with EAGAIN; 49 µs of server CPU per ' +
  'write, most of it waking one of 16 sleeping threads per write). Writing on the event loop instead was cheap on a file ' +
  'written in small pieces (a 4 KiB pwrite costs the kernel 2.5-2.9 µs) but not on this benchmark\'s file, written in ' +
  '1 MiB pieces: the page cache holds it in large folios and ext4 walks every buffer head of the folio on each small ' +
  'write (`ext4_block_write_begin`, 47% of the server\'s samples; 10-17 µs per write). Page-aligned writes now go to ' +
  'one native writer thread per file (native/file_writer.c) that takes its queue in batches and sleeps only when it ' +
  'is empty: the event loop pays a queue push and one completion call (~20 µs of its time per write, down from ~35), ' +
  'the kernel\'s part runs on the other core, as io_uring\'s workers do for qemu-nbd (its total: 52-65 µs per write). ' +
  'A/B on this file: 26-36k IOPS against 20-27k before. What remains on the event loop is mostly thread wake-ups ' +
  '(fio\'s and the writer\'s) and the promise chain of a write. Cold ' +
  'reads hand misses to the pool; while the NOWAIT hit rate is low only one read in 8 probes, and `fleece serve` runs ' +
  'with 16 libuv threads (UV_THREADPOOL_SIZE) so up to 16 misses are in flight, like qemu-nbd\'s thread pool. "Cold" ' +
  'here means dropped from this VM\'s page cache, not the host\'s: the same run swings from ~15k to ~60k IOPS for every ' +
  'server as the host caches the file. 1 MiB sequential reads spent two thirds of their busy time in the page-cache ' +
  'copy, about half of it page faults on the freshly allocated reply buffer: large replies reuse pooled buffers once ' +
  'the socket has written them (server CPU per 1 MiB read ~1.7 ms -> ~0.6 ms; qemu-nbd io_uring ~1.2 ms).';

export async function runNbdBench(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const dir = await mkdtemp(join(tmpdir(), 'fleece-bench-nbd-'));
  const file = join(dir, 'disk.img');
  try {
    await makeImage(file);
    const sections: string[] = [];
    const targets: Record<string, Record<string, { min: number; vs: string }>> = {
      warm: {
        '4 KiB random read, QD16': { min: 1.0, vs: 'qemu-nbd io_uring' },
        '4 KiB random write, QD16': { min: 1.2, vs: 'qemu-nbd io_uring' },
        '1 MiB sequential read, QD16': { min: 1.5, vs: 'qemu-nbd io_uring' },
      },
      cold: { '4 KiB random read, QD16': { min: 0.9, vs: 'qemu-nbd' } },
    };
    for (const mode of ['warm', 'cold'] as const) {
      const rows: (string | number)[][] = [];
      for (const work of workloads) {
        if (mode === 'cold' && work.side === 'write') continue;
        const samples = new Map<string, number[]>(peers.map((p) => [p.name, []]));
        for (let run = 0; run < RUNS; run++) {
          for (const peer of peers) {
            const result = await measure(peer, work, file, dir, mode === 'cold');
            samples.get(peer.name)!.push(value(result, work));
            process.stderr.write(`${mode} ${work.name} ${peer.name} run ${run + 1}: ${fmt(value(result, work), work)}\n`);
          }
        }
        const med = (name: string) => median(samples.get(name)!);
        const target = targets[mode]![work.name];
        rows.push([
          work.name,
          ...peers.map((p) => fmt(med(p.name), work)),
          ratioCell(med('fleece') / med('qemu-nbd'), target?.vs === 'qemu-nbd' ? target : undefined),
          ratioCell(med('fleece') / med('qemu-nbd io_uring'), target?.vs === 'qemu-nbd io_uring' ? target : undefined),
        ]);
      }
      sections.push(`### ${mode === 'warm' ? 'Warm (file in the page cache)' : 'Cold (file pages dropped before each run)'}\n\n` +
        table(['workload', ...peers.map((p) => p.name), 'fleece / qemu-nbd', 'fleece / qemu-nbd io_uring'], rows));
    }
    const body = `${sections.join('\n\n')}\n\nMedian of ${RUNS} runs of ${SECONDS} s each per cell, peers alternated, \`sync\` before each run, a fresh server per run, ` +
      `one ${FILE_SIZE / 2 ** 20} MiB raw file of random data served over a Unix socket. fio: ` +
      `\`fio --ioengine=nbd --uri=nbd+unix:///bench?socket=S --size=512M --time_based --runtime=${SECONDS} --rw=randread|randwrite|read --bs=4k|1M --iodepth=16\`. ` +
      `Servers: \`fleece serve FILE --socket S\`, \`qemu-nbd -f raw -t -k S FILE\` and the same with \`--aio=io_uring\`. ` +
      `Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on ${availableParallelism()} CPUs.\n\n${WHERE_THE_TIME_GOES}`;
    await writeSection({ name: 'nbd', title: 'NBD server: fleece serve vs qemu-nbd (fio, nbd engine)', body });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
