// The two lanes a backup goes through a disk in: together they cover every slot exactly once, in batches of at
// most perBatch slots, each lane in disk order; the second lane starts half way through the work,
// and a lane that runs out takes half of what the other has left.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runInLanes, WorkLanes, type Run } from '../../src/repo/work-lanes.js';

function slotsOf(batches: Run[][]): number[] {
  return batches.flat().flatMap(([first, count]) => Array.from({ length: count }, (_, i) => first + i));
}

/** Pulls from the lanes in the given pattern (0 or 1 per pull) until both are done. */
function drain(lanes: WorkLanes, pattern: (pull: number) => 0 | 1): Run[][][] {
  const its = [lanes.batches(0), lanes.batches(1)];
  const got: Run[][][] = [[], []];
  const done = [false, false];
  for (let pull = 0; !(done[0] && done[1]); pull++) {
    let lane = pattern(pull);
    if (done[lane]) lane = lane === 0 ? 1 : 0;
    const next = its[lane]!.next();
    if (next.done) done[lane] = true;
    else got[lane]!.push(next.value[0]);
  }
  return got;
}

test('two lanes cover every slot once, in bounded batches, each lane in disk order', () => {
  const runs: Run[] = [[0, 1000], [1500, 3], [2000, 777], [5000, 1]];
  const expected = slotsOf([runs]);
  for (const pattern of [(): 0 => 0, (): 1 => 1, (p: number): 0 | 1 => (p % 2) as 0 | 1, (p: number): 0 | 1 => (p % 7 === 0 ? 1 : 0)]) {
    const got = drain(new WorkLanes(runs, 64, 50), pattern);
    const all = slotsOf([...got[0]!, ...got[1]!]).sort((a, b) => a - b);
    assert.deepEqual(all, expected);
    for (const lane of got) {
      for (const batch of lane) assert.ok(slotsOf([batch]).length <= 64);
      const order = slotsOf(lane);
      // Disk order within each stolen piece: a lane only jumps backwards when it steals.
      const jumps = order.filter((s, i) => i > 0 && s < order[i - 1]!).length;
      assert.ok(jumps <= 4, `lane went backwards ${jumps} times`);
    }
  }
});

test('the second lane starts half way; a lane that runs out steals half of the rest', () => {
  const lanes = new WorkLanes([[0, 1024]], 16, 64);
  const a = lanes.batches(0);
  const b = lanes.batches(1);
  assert.deepEqual(a.next().value, [[[0, 16]]]);
  assert.deepEqual(b.next().value, [[[520, 16]]], 'lane 1 took the second half of the 1008 slots left');
  // Lane 1 finishes its half while lane 0 stays put; then it steals half of lane 0's rest.
  const own: Run[][] = [];
  let batch: Run[] = b.next().value![0];
  while (batch[0]![0] >= 520) {
    own.push(batch);
    batch = b.next().value![0];
  }
  assert.deepEqual(slotsOf(own), Array.from({ length: 1024 - 536 }, (_, i) => 536 + i));
  assert.deepEqual(batch, [[268, 16]], 'stole the second half of [16, 520)');
  assert.deepEqual(a.next().value, [[[16, 16]]], 'lane 0 goes on with the first half');
});

test('work too small to split stays in one lane; stop() ends both', () => {
  const small = new WorkLanes([[10, 100]], 16, 64);
  assert.equal([...small.batches(1)].length, 0, 'lane 1 finds nothing worth taking');
  assert.equal(slotsOf([...small.batches(0)].map(([b]) => b)).length, 100);

  const lanes = new WorkLanes([[0, 4096]], 16, 64);
  const a = lanes.batches(0);
  a.next();
  lanes.stop();
  assert.equal(a.next().done, true);
  assert.equal(lanes.batches(1).next().done, true);
});

test('runInLanes: a failing batch stops both lanes and is rethrown once the rest settled', async () => {
  const lanes = new WorkLanes([[0, 100_000]], 16, 64);
  let running = 0;
  let done = 0;
  let settledAfterFailure = 0;
  let failed = false;
  await assert.rejects(
    runInLanes(
      lanes,
      async (batch) => {
        const first = batch[0]![0];
        running++;
        await new Promise((resolve) => setImmediate(resolve));
        running--;
        if (failed) settledAfterFailure++;
        if (first === 160) {
          failed = true;
          throw new Error('boom');
        }
        done++;
      },
      3,
    ),
    /boom/,
  );
  assert.equal(running, 0, 'nothing still running when runInLanes rejects');
  assert.ok(done < 100_000 / 16 / 2, `stopped early (${done} batches done)`);
  assert.ok(settledAfterFailure <= 6, 'only batches already in flight finished after the failure');
});
