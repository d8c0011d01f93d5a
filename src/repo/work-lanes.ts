// The order a backup goes through a disk's slots in: two lanes at once. Stretches of a disk
// differ in what they cost: incompressible data is bound by the store's bandwidth (the workers
// only hash it and copy it into packs, and sit half idle), compressible data by the CPUs (zstd),
// zeros by neither. Taken in disk order, a long stretch of one kind leaves the other resource
// idle for as long as it lasts; two lanes far apart let one kind overlap another. (A restore
// keeps both cores busy in either kind of stretch, so it reads in disk order: two lanes measured
// no faster there.)
//
// Each lane keeps its own batches in flight, so each goes at its own pace, and they share the
// work by stealing: the second lane starts with the second half of all of it, and a lane that
// runs out takes the second half of what the other one has left, until too little is left to
// split. (Batches taken from the two lanes in turn would hold the faster lane to the pace of the
// slower one, and a stretch of zeros would end together with the stretch of random data.)

import { runBounded } from './run-bounded.js';

/** A run of slots: [first slot, count]. */
export type Run = [number, number];

/** A lane's work: runs in disk order, the first one partly done. */
type Lane = Run[];

export class WorkLanes {
  readonly #lanes: [Lane, Lane];
  readonly #perBatch: number;
  readonly #minSplit: number;
  #stopped = false;

  /** `runs` in disk order; batches of at most `perBatch` slots; lanes split while 2 × `minSplitSlots` are left. */
  constructor(runs: readonly Run[], perBatch: number, minSplitSlots: number) {
    this.#lanes = [runs.filter(([, count]) => count > 0).map(([first, count]): Run => [first, count]), []];
    this.#perBatch = perBatch;
    this.#minSplit = minSplitSlots;
  }

  /** Lane 0's or lane 1's batches (runBounded's argument tuples) until no work is left to it. */
  *batches(lane: 0 | 1): Generator<[Run[]]> {
    while (!this.#stopped) {
      let mine = this.#lanes[lane];
      if (mine.length === 0) {
        const stolen = splitTail(this.#lanes[lane === 0 ? 1 : 0], this.#minSplit);
        if (!stolen) return; // too little left to share: the other lane finishes it
        this.#lanes[lane] = mine = stolen;
      }
      yield [take(mine, this.#perBatch)];
    }
  }

  /** Ends both lanes' batches (after a failure). */
  stop(): void {
    this.#stopped = true;
  }
}

/**
 * Runs `fn` over both lanes' batches, `perLane` at a time in each lane; the first failure stops
 * both lanes and is rethrown once everything in flight settled.
 */
export async function runInLanes(lanes: WorkLanes, fn: (batch: Run[]) => Promise<void>, perLane: number, signal?: AbortSignal): Promise<void> {
  // Stop at the failure itself, not once the failing lane's other batches settled.
  const guarded = (batch: Run[]): Promise<void> =>
    fn(batch).catch((err: unknown) => {
      lanes.stop();
      throw err;
    });
  const settled = await Promise.allSettled(([0, 1] as const).map((lane) => runBounded(lanes.batches(lane), guarded, perLane, signal)));
  for (const lane of settled) if (lane.status === 'rejected') throw lane.reason;
}

/** Removes and returns the first `perBatch` slots of a lane (across runs). */
function take(lane: Lane, perBatch: number): Run[] {
  const batch: Run[] = [];
  let left = perBatch;
  while (left > 0 && lane.length > 0) {
    const run = lane[0]!;
    const n = Math.min(left, run[1]);
    batch.push([run[0], n]);
    left -= n;
    if (n === run[1]) lane.shift();
    else lane[0] = [run[0] + n, run[1] - n];
  }
  return batch;
}

/** Cuts the second half of a lane's slots off into a new lane, or undefined when fewer than 2 × minSlots are left. */
function splitTail(lane: Lane, minSlots: number): Lane | undefined {
  const total = lane.reduce((sum, [, count]) => sum + count, 0);
  if (total < 2 * minSlots) return undefined;
  let keep = Math.ceil(total / 2);
  for (let i = 0; i < lane.length; i++) {
    const [first, count] = lane[i]!;
    if (keep >= count) {
      keep -= count;
      continue;
    }
    const tail: Lane = keep > 0 ? [[first + keep, count - keep], ...lane.slice(i + 1)] : lane.slice(i);
    lane.length = keep > 0 ? i + 1 : i;
    if (keep > 0) lane[i] = [first, keep];
    return tail;
  }
  return undefined;
}
