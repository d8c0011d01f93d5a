// Several hosts on one bucket: two hosts back up their own disks (sharing some content) at the
// same time, each deleting its older backups, while a third runs gc over and over. Leases and
// condemnation must keep every chunk a committed or running backup needs: all survivors restore
// byte-identical, verify re-hashes clean and `repo check` finds nothing wrong.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startRgw, type Rgw } from '../helpers/rgw.js';
import { scratchDir } from '../helpers/tools.js';
import { fleece, makeImage, sha256File } from '../repo/helpers.js';

const REPO = 's3://shared-bucket/fleet';
const ROUNDS = 4;
const BLOCK = 256 * 1024;
let rgw: Rgw;
let dir: { path: string; cleanup: () => Promise<void> };

before(async () => {
  rgw = await startRgw();
  dir = await scratchDir('fleece-s3-hosts-');
}, { timeout: 240_000 });

after(async () => {
  await rgw?.stop();
  await dir?.cleanup();
});

/** A host: its own cache directory, so its own catalog and read cache. */
function host(name: string): (args: string[]) => ReturnType<typeof fleece> {
  const env = { FLEECE_CACHE_DIR: join(dir.path, `cache-${name}`) };
  return (args) => fleece(REPO, args, env);
}

/** Content both hosts write in round `round`: dedups across hosts, and turns to garbage later. */
function sharedBlock(round: number): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let at = 0; at < BLOCK; at += 32) createHash('sha256').update(`shared ${round} ${at}`).digest().copy(out, at);
  return out;
}

interface Done {
  readonly id: string;
  readonly sha: string;
  readonly host: string;
}

async function hostLoop(name: string, image: string, base: number, done: Done[], deleted: Set<string>): Promise<void> {
  const cli = host(name);
  const mine: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const file = await open(image, 'r+');
    await file.write(sharedBlock(round), 0, BLOCK, base + round * BLOCK);
    await file.write(createHash('sha512').update(`${name} ${round}`).digest(), 0, 64, 5 * BLOCK * ROUNDS);
    await file.close();
    const sha = await sha256File(image);
    // Rate-limited so each backup lasts ~3 s: gc runs must start while one is running.
    const r = await cli(['backup', image, '--disk', `disk-${name}`, '--json', '--rate-limit', '2M']);
    assert.equal(r.code, 0, `${name} round ${round}: ${r.stderr}`);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    done.push({ id, sha, host: name });
    mine.push(id);
    if (mine.length > 2) {
      const old = mine.shift()!;
      const d = await cli(['delete', old]);
      assert.equal(d.code, 0, d.stderr);
      deleted.add(old);
    }
  }
}

test('two hosts back up to one bucket concurrently while a third runs gc: every backup restores byte-identical', { timeout: 300_000 }, async (t) => {
  const gcHost = host('gc');
  assert.equal((await gcHost(['init', '--chunk-size', '16K', '--pack-size', '512K'])).code, 0);
  const images = { a: join(dir.path, 'a.img'), b: join(dir.path, 'b.img') };
  await makeImage(images.a, 'random', 6 * 1024 * 1024);
  await makeImage(images.b, 'random', 6 * 1024 * 1024);

  const done: Done[] = [];
  const deleted = new Set<string>();
  const gcRuns: { mode: string; deleted: number; condemned: number }[] = [];
  let hostsDone = false;
  const gcLoop = (async () => {
    while (!hostsDone) {
      const r = await gcHost(['gc', '--json']);
      if (r.code !== 0) assert.match(r.stderr, /another gc is running/, r.stderr);
      else {
        const report = JSON.parse(r.stdout) as { mode: string; deletedPacks: string[]; condemnedPacks: string[] };
        gcRuns.push({ mode: report.mode, deleted: report.deletedPacks.length, condemned: report.condemnedPacks.length });
      }
    }
  })();
  try {
    await Promise.all([hostLoop('a', images.a, 0, done, deleted), hostLoop('b', images.b, 3 * BLOCK, done, deleted)]);
  } finally {
    hostsDone = true;
    await gcLoop;
  }
  assert.equal(done.length, 2 * ROUNDS);
  t.diagnostic(`gc runs during the backups: ${JSON.stringify(gcRuns)}`);
  assert.ok(gcRuns.some((g) => g.mode === 'deferred'), `some gc overlapped a running backup: ${JSON.stringify(gcRuns)}`);

  // Quiet now: this gc deletes everything unreferenced at once.
  const final = await gcHost(['gc', '--json']);
  assert.equal(final.code, 0, final.stderr);
  const finalReport = JSON.parse(final.stdout) as { mode: string; deletedPacks: string[] };
  assert.equal(finalReport.mode, 'immediate');
  const totalDeleted = gcRuns.reduce((n, g) => n + g.deleted, 0) + finalReport.deletedPacks.length;
  assert.ok(totalDeleted > 0, 'gc freed the deleted backups\' packs');

  const survivors = done.filter((d) => !deleted.has(d.id));
  assert.equal(survivors.length, 4);
  const listed = JSON.parse((await gcHost(['list', '--json'])).stdout) as { id: string }[];
  assert.deepEqual(listed.map((m) => m.id).sort(), survivors.map((s) => s.id).sort());
  // Each survivor restored by the host that did not write it (its catalog learnt it from the bucket).
  for (const s of survivors) {
    const out = join(dir.path, `${s.id}.out`);
    const r = await host(s.host === 'a' ? 'b' : 'a')(['restore', s.id, out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), s.sha, `backup ${s.id} of host ${s.host} restores byte-identical`);
  }
  const verify = await gcHost(['verify']);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const check = await gcHost(['repo', 'check', '--json']);
  assert.equal(check.code, 0, check.stdout);
  assert.deepEqual((JSON.parse(check.stdout) as { errors: string[] }).errors, []);
});
