// Backup-job benchmark: a 4 GiB daemon disk backed up by `fleece backup disk:vm` (full, then
// incrementals from the disk's bitmap), against restic 0.14 and borg 1.2 backing up the same
// image file in the same run. Times, bytes read from the source, and the machine's limit.

import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NbdDevice } from '../src/block/drivers/nbd-device.js';
import { parseSize } from '../src/core/size.js';
import { hashRate } from './lib/hash-rate.js';
import { dropFileCache, startServer, syncAll, type Server } from './lib/procs.js';
import { ratioCell, table, writeSection } from './lib/report.js';
import { makeBenchImage } from './repo-images.js';
import { borgTool, measure, resticTool, type Measured, type Tool } from './repo-tools.js';

const MIB = 2 ** 20;
const SIZE = Math.max(64 * MIB, Math.floor(parseSize(process.env.BENCH_SIZE ?? '4G', 'BENCH_SIZE') / (16 * MIB)) * 16 * MIB);
const CLUSTER = 64 * 1024; // the disk bitmap's granularity and the repository's chunk size
const SEQUENTIAL = 64 * MIB;
const CLI = resolve('dist/src/cli/fleece.cjs');

type Step = 'full' | 'scattered' | 'sequential';
const STEPS: Step[] = ['full', 'scattered', 'sequential'];
const STEP_LABEL: Record<Step, string> = {
  full: 'full backup',
  scattered: 'after 1 % scattered 4 KiB writes',
  sequential: 'after one 64 MiB sequential rewrite',
};

interface Write {
  readonly offset: number;
  readonly data: Buffer;
}

interface FleeceRun extends Measured {
  readonly bytesRead: number;
  readonly parent: string | null;
}

const mib = (bytes: number): string => (bytes / MIB).toFixed(bytes < 10 * MIB ? 1 : 0);
const sec = (s: number): string => s.toFixed(2);
const log = (text: string): void => void process.stderr.write(`backup bench: ${text}\n`);

export async function runBackupBench(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'fleece-bench-backup-'));
  const loadBefore = loadavg();
  const state = join(work, 'state');
  const repo = join(work, 'fleece');
  const env = { ...process.env, FLEECE_STATE: state, FLEECE_REPO: repo };
  const fleece = (args: string[]): Measured => measure(process.execPath, [CLI, ...args], { env });
  let daemon: Server | undefined;
  try {
    const image = join(work, 'vm.img');
    log(`image of ${mib(SIZE)} MiB in ${work}`);
    await makeBenchImage(image, SIZE);
    daemon = await startServer(process.execPath, [CLI, 'daemon', '--state', state], join(state, 'api.sock'), env);
    fleece(['disk', 'create', 'vm', '--from', image]);
    fleece(['init']);
    const diskImage = join(state, 'disks', 'vm', 'disk.img');
    const peers: Tool[] = [resticTool(work), borgTool(work)];
    for (const peer of peers) peer.init();

    const limit = await machineLimit(image);
    log(`machine limit: read ${sec(limit.readSeconds)} s, hash ${sec(limit.hashSeconds)} s`);

    const fleeceRuns = new Map<Step, FleeceRun>();
    const peerRuns = new Map<Tool, Map<Step, Measured>>(peers.map((p) => [p, new Map()]));
    const dirty = new Map<Step, number>();
    for (const step of STEPS) {
      if (step !== 'full') {
        const writes = step === 'scattered' ? scattered(SIZE, 0.01) : sequential(SIZE);
        dirty.set(step, dirtyClusterBytes(writes));
        await applyToDisk(state, writes);
        await applyToFile(image, writes);
      }
      settle(diskImage);
      const run = fleece(['backup', 'disk:vm', '--json']);
      const json = JSON.parse(run.stdout) as { bytesRead: number; parent: string | null };
      fleeceRuns.set(step, { ...run, bytesRead: json.bytesRead, parent: json.parent });
      log(`fleece ${step}: ${sec(run.seconds)} s, read ${mib(json.bytesRead)} MiB`);
      for (const peer of peers) {
        settle(image);
        const measured = peer.backup(image, 'vm');
        peerRuns.get(peer)!.set(step, measured);
        log(`${peer.name} ${step}: ${sec(measured.seconds)} s`);
      }
    }
    await checkRestore(fleece, work, diskImage);

    const restic = peerRuns.get(peers[0]!)!;
    const rows = STEPS.map((step) => {
      const f = fleeceRuns.get(step)!;
      return [
        STEP_LABEL[step],
        `${sec(f.seconds)} s`,
        ...peers.map((p) => `${sec(peerRuns.get(p)!.get(step)!.seconds)} s`),
        `${mib(f.bytesRead)} MiB`,
        step === 'full' ? '—' : `${mib(dirty.get(step)!)} MiB`,
        `${(restic.get(step)!.seconds / f.seconds).toFixed(1)}×`,
      ];
    });
    const limitSeconds = Math.max(limit.readSeconds, limit.hashSeconds);
    const full = fleeceRuns.get('full')!;
    const ratios: (string | number)[][] = [
      ['incremental (1 % scattered) speed fleece / restic', ratioCell(restic.get('scattered')!.seconds / fleeceRuns.get('scattered')!.seconds, { min: 10 })],
      ['incremental (64 MiB sequential) speed fleece / restic', ratioCell(restic.get('sequential')!.seconds / fleeceRuns.get('sequential')!.seconds, { min: 10 })],
      ['bytes read / dirty clusters (1 % scattered)', ratioCell(fleeceRuns.get('scattered')!.bytesRead / dirty.get('scattered')!, { max: 1.1 })],
      ['bytes read / dirty clusters (64 MiB sequential)', ratioCell(fleeceRuns.get('sequential')!.bytesRead / dirty.get('sequential')!, { max: 1.1 })],
      ['full backup speed / machine limit', ratioCell(limitSeconds / full.seconds, { min: 0.7 })],
    ];
    const loadAfter = loadavg();
    await writeSection({
      name: 'backup',
      title: 'Backup jobs: daemon disk with dirty bitmap vs restic 0.14 and borg 1.2',
      body: `${table(['step', 'fleece disk:vm', ...peers.map((p) => `${p.name} (image file)`), 'fleece read from source', 'dirty clusters (64 KiB)', 'restic / fleece time'], rows)}

${table(['ratio', 'value'], ratios)}

Machine limit for the full backup: the slower of reading the raw image with its pages dropped (\`dd bs=1M\`, ${sec(limit.readSeconds)} s, ${(SIZE / MIB / limit.readSeconds).toFixed(0)} MiB/s) and BLAKE3-hashing ${mib(SIZE)} MiB in 64 KiB pieces on both cores (${sec(limit.hashSeconds)} s, ${(limit.hashRate / MIB).toFixed(0)} MiB/s).

Disk: ${mib(SIZE)} MiB created with \`fleece disk create vm --from IMG\` from the repository bench's image (a quarter random, a quarter compressible text, half holes). Writes go to the daemon disk through NBD and, identically, to the image file the peers back up. Before every measured backup the bench runs \`sync\` and drops the source file's pages (cold cache: the nightly case). fleece: \`fleece backup disk:vm --json\` (the first backup is full and starts the disk's backup bitmap; later ones take a snapshot restricted to the bitmap and read only its dirty clusters), 64 KiB chunks, zstd 1, local repository directory. restic: \`restic backup IMG\`; borg: \`borg create REPO::NAME IMG\` (each reads the whole file every time). Every fleece backup is restored afterwards and compared with the disk. Times are wall clock of the whole command. One run per tool and step.

Load average (1, 5, 15 min): ${loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(' ')} after, on 2 shared cores.`,
    });
  } finally {
    await daemon?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** Flushes every dirty page, then drops the source's pages so each backup starts cold. */
function settle(path: string): void {
  syncAll();
  dropFileCache(path);
}

async function machineLimit(image: string): Promise<{ readSeconds: number; hashSeconds: number; hashRate: number }> {
  settle(image);
  const started = process.hrtime.bigint();
  const dd = spawnSync('dd', [`if=${image}`, 'of=/dev/null', 'bs=1M'], { encoding: 'utf8' });
  if (dd.status !== 0) throw new Error(`dd failed: ${dd.stderr}`);
  const readSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rate = await hashRate(Math.min(SIZE, 1024 * MIB) / 2, 2);
  return { readSeconds, hashSeconds: SIZE / rate, hashRate: rate };
}

/** `fraction` of the disk in random 4 KiB-aligned blocks of random bytes. */
function scattered(size: number, fraction: number): Write[] {
  const blocks = Math.round((size * fraction) / 4096);
  return Array.from({ length: blocks }, () => ({ offset: randomInt(size / 4096) * 4096, data: randomBytes(4096) }));
}

/** One 64 MiB run of random bytes at a random cluster-aligned offset in the data half. */
function sequential(size: number): Write[] {
  const offset = randomInt((size / 2 - SEQUENTIAL) / CLUSTER) * CLUSTER;
  const writes: Write[] = [];
  for (let at = 0; at < SEQUENTIAL; at += 4 * MIB) writes.push({ offset: offset + at, data: randomBytes(4 * MIB) });
  return writes;
}

function dirtyClusterBytes(writes: readonly Write[]): number {
  const clusters = new Set<number>();
  for (const w of writes) {
    for (let c = Math.floor(w.offset / CLUSTER); c * CLUSTER < w.offset + w.data.length; c++) clusters.add(c);
  }
  return clusters.size * CLUSTER;
}

async function applyToDisk(state: string, writes: readonly Write[]): Promise<void> {
  const device = await NbdDevice.open(`nbd+unix:///vm?socket=${join(state, 'nbd.sock')}`);
  try {
    for (let i = 0; i < writes.length; i += 64) {
      await Promise.all(writes.slice(i, i + 64).map((w) => device.write(w.offset, w.data)));
    }
    await device.flush();
  } finally {
    await device.close();
  }
}

async function applyToFile(path: string, writes: readonly Write[]): Promise<void> {
  const file = await open(path, 'r+');
  try {
    for (const w of writes) await file.write(w.data, 0, w.data.length, w.offset);
  } finally {
    await file.close();
  }
}

/** The last backup must restore to exactly what the disk holds now. */
async function checkRestore(fleece: (args: string[]) => Measured, work: string, diskImage: string): Promise<void> {
  const list = JSON.parse(fleece(['list', '--json']).stdout) as { id: string }[];
  const out = join(work, 'restored.img');
  fleece(['restore', list[list.length - 1]!.id, out, '--no-sync']);
  if (spawnSync('cmp', ['--quiet', out, diskImage]).status !== 0) throw new Error('the last fleece backup does not restore to the disk content');
  await rm(out, { force: true });
}
