// Cost of live-disk features on the guest write path: fio 4 KiB random writes at QD16 through
// the daemon's NBD export with (a) a plain disk, (b) an enabled dirty bitmap, (c) a live snapshot
// being copied out by nbdcopy with a RAM cache, (d) the same spilling to disk, (e) after release.

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { median, ratioCell, table, writeSection } from './lib/report.js';
import { runFio, startServer, syncAll, type FioResult } from './lib/procs.js';

const CLI = resolve('dist/src/cli/fleece.cjs');
const SIZE_MIB = 512;
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);

interface Case {
  readonly key: string;
  readonly name: string;
  readonly target?: { min: number };
}

const cases: Case[] = [
  { key: 'a', name: '(a) plain disk' },
  { key: 'b', name: '(b) enabled bitmap', target: { min: 0.95 } },
  { key: 'c', name: '(c) snapshot + reader, RAM cache', target: { min: 0.5 } },
  { key: 'd', name: '(d) snapshot + reader, spilling cache', target: { min: 0.5 } },
  { key: 'e', name: '(e) after release', target: { min: 0.95 } },
];

function cli(state: string, ...args: string[]): Promise<void> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [CLI, ...args, '--state', state], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? ok() : fail(new Error(`fleece ${args.join(' ')}: ${err.trim()}`))));
  });
}

/** nbdcopy of the snapshot to null:, running while fio writes. */
function reader(uri: string): { done: Promise<void> } {
  const child = spawn('nbdcopy', [uri, 'null:'], { stdio: 'ignore' });
  return { done: new Promise((r) => child.once('exit', () => r())) };
}

export async function runCbwBench(): Promise<void> {
  const state = await mkdtemp(join(tmpdir(), 'fleece-bench-cbw-'));
  const spill = join(state, 'spill');
  await mkdir(spill);
  const socket = join(state, 'nbd.sock');
  const uri = (name: string) => `nbd+unix:///${name}?socket=${socket}`;
  const server = await startServer(process.execPath, [CLI, 'daemon', '--state', state], join(state, 'api.sock'));
  try {
    await cli(state, 'disk', 'create', 'vm', '--size', `${SIZE_MIB}M`);
    runFio(['--name=fill', '--ioengine=nbd', `--uri=${uri('vm')}`, `--size=${SIZE_MIB}M`, '--rw=write', '--bs=1M', '--iodepth=8'], 'write');
    const fio = (): FioResult =>
      runFio(['--name=bench', '--ioengine=nbd', `--uri=${uri('vm')}`, `--size=${SIZE_MIB}M`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--time_based', `--runtime=${SECONDS}`, '--numjobs=1'], 'write');
    const samples = new Map<string, FioResult[]>(cases.map((c) => [c.key, []]));
    // Each case starts with no dirty pages left by the previous one (e.g. a deleted spill file's).
    const measure = (): FioResult => {
      syncAll();
      return fio();
    };
    const record = (key: string, r: FioResult) => {
      samples.get(key)!.push(r);
      process.stderr.write(`cbw ${key}: ${(r.iops / 1000).toFixed(1)}k IOPS, p99 ${r.p99LatencyUs.toFixed(0)} µs\n`);
    };
    // Per run: (a) next to (b), in alternating order, and (a) again at the end. (b) divides by the
    // (a) right beside it (the bitmap is the only difference, so drift of the shared machine
    // between the two is as small as it gets); the other cases divide by the mean of the run's
    // two (a) results, so a drift during a run weighs on the baseline as much as on the cases.
    const baselines: number[] = [];
    const bRatios: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      let first: FioResult;
      let withBitmap: FioResult;
      if (run % 2 === 0) {
        first = measure();
        await cli(state, 'bitmap', 'add', 'vm', 'bench');
        withBitmap = measure();
      } else {
        await cli(state, 'bitmap', 'add', 'vm', 'bench');
        withBitmap = measure();
        await cli(state, 'bitmap', 'rm', 'vm', 'bench');
        first = measure();
        await cli(state, 'bitmap', 'add', 'vm', 'bench');
      }
      record('a', first);
      record('b', withBitmap);
      bRatios.push(withBitmap.iops / first.iops);
      for (const [key, args] of [['c', ['--ram-cache', '1G']], ['d', ['--ram-cache', '32M', '--spill-dir', spill, '--spill-max', '2G']]] as const) {
        syncAll();
        await cli(state, 'snapshot', 'create', 'vm', '--name', key, ...args);
        const copy = reader(uri(`vm@${key}`));
        record(key, measure());
        await copy.done;
        await cli(state, 'snapshot', 'release', `vm@${key}`);
      }
      record('e', measure());
      await cli(state, 'bitmap', 'rm', 'vm', 'bench');
      const last = measure();
      record('a', last);
      baselines.push((first.iops + last.iops) / 2);
    }
    // samples of a case hold one entry per run, in run order (a: two per run).
    const ratios = (key: string) => (key === 'b' ? bRatios : samples.get(key)!.map((r, run) => r.iops / baselines[run]!));
    const ratio = (key: string) => median(ratios(key));
    const iops = (key: string) => median(samples.get(key)!.map((r) => r.iops));
    const p99 = (key: string) => median(samples.get(key)!.map((r) => r.p99LatencyUs));
    const rows = cases.map((c) => [
      c.name,
      `${(iops(c.key) / 1000).toFixed(1)}k`,
      `${p99(c.key).toFixed(0)} µs`,
      c.key === 'a' ? '1.00×' : ratioCell(ratio(c.key), c.target),
      c.key === 'a' ? '' : ratios(c.key).map((r) => r.toFixed(2)).join(', '),
    ]);
    const body = `${table(['case', 'IOPS', 'p99 latency', 'IOPS vs (a)', 'vs (a), each run'], rows)}\n\n` +
      `${RUNS} runs of ${SECONDS} s per case, cases alternated within each run: (a) and (b) back to back (in turn (a) first, then (b) first), then (c), (d), (e), and (a) again. ` +
      `IOPS and p99 are medians over runs; the (b) ratio is the median over runs of (b) divided by the (a) beside it, the others the median over runs of the case's IOPS divided by the mean of its run's two (a) results. One \`fleece daemon\`, a ${SIZE_MIB} MiB disk ` +
      `filled with data, fio \`--ioengine=nbd --rw=randwrite --bs=4k --iodepth=16\` on \`nbd+unix:///vm\`. (c)/(d): \`fleece snapshot create vm\` ` +
      `with \`--ram-cache 1G\` resp. \`--ram-cache 32M --spill-dir … --spill-max 2G\`, while \`nbdcopy nbd+unix:///vm@SNAP null:\` copies it out; ` +
      `(e) after \`fleece snapshot release\`, bitmap still enabled.`;
    await writeSection({ name: 'cbw', title: 'Live disks: cost of bitmaps and snapshots on guest writes', body });
  } finally {
    await server.stop();
    await rm(state, { recursive: true, force: true });
  }
}
