// Corruption: a flipped byte in a pack, a truncated index page, a deleted pack. verify must name
// exactly the affected backups and why; their restore fails loudly; the others still restore.

import assert from 'node:assert/strict';
import { chmod, lstat, open, readdir, readFile, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ZERO_ID } from '../../src/repo/blob-codec.js';
import { packKey } from '../../src/repo/pack-format.js';
import { Repository } from '../../src/repo/repository.js';
import { LocalStore } from '../../src/repo/stores/local-store.js';
import { scratchDir } from '../helpers/tools.js';
import { fleece, makeImage, sha256File } from './helpers.js';

interface VerifyJson {
  ok: boolean;
  backups: { id: string; disk: string; ok: boolean; problems: string[] }[];
}

for (const encrypt of [false, true]) {
  test(`verify names exactly the damaged backups (${encrypt ? 'encrypted' : 'plain'})`, async () => {
    const dir = await scratchDir();
    const env = { FLEECE_PASSWORD: 'pw' };
    try {
      const repoDir = join(dir.path, 'repo');
      assert.equal((await fleece(repoDir, ['init', '--chunk-size', '16K', '--pack-size', '256K', ...(encrypt ? ['--encrypt'] : [])], env)).code, 0);
      const ids: Record<string, string> = {};
      for (const disk of ['a', 'b', 'c', 'd']) {
        const image = join(dir.path, `${disk}.img`);
        await makeImage(image, 'random', 1024 * 1024);
        const r = await fleece(repoDir, ['backup', image, '--disk', disk, '--json'], env);
        assert.equal(r.code, 0, r.stderr);
        ids[disk] = (JSON.parse(r.stdout) as { id: string }).id;
      }
      const repo = await Repository.open(new LocalStore(repoDir), { secret: { passphrase: 'pw' } });
      await repo.syncCatalog();
      const manifestOf = (disk: string) => repo.catalog.backups().find((m) => m.disk === disk)!;
      const packPath = (pack: string) => join(repoDir, ...packKey(pack).split('/'));

      // a: flip one byte inside a chunk.
      const pagesA = await repo.pageIds(manifestOf('a'));
      const pageA = await repo.page(pagesA[0]!);
      const chunkA = pageA.subarray(5 * 32, 6 * 32);
      assert.ok(!chunkA.equals(ZERO_ID));
      const locA = repo.catalog.locate(chunkA)[0]!;
      const fa = await open(packPath(locA.pack), 'r+');
      const byte = Buffer.alloc(1);
      await fa.read(byte, 0, 1, locA.offset + 7);
      byte[0] = byte[0]! ^ 0x40;
      await fa.write(byte, 0, 1, locA.offset + 7);
      await fa.close();

      // b: truncate its index page (and so the rest of that pack).
      const pageB = (await repo.pageIds(manifestOf('b')))[0]!;
      const locB = repo.catalog.locate(pageB)[0]!;
      assert.notEqual(locB.pack, locA.pack);
      await truncate(packPath(locB.pack), locB.offset + Math.floor(locB.storedLength / 2));

      // c: delete one of its packs (one holding chunks only).
      const pageC = await repo.page((await repo.pageIds(manifestOf('c')))[0]!);
      const locC = repo.catalog.locate(pageC.subarray(0, 32))[0]!;
      assert.ok(![locA.pack, locB.pack].includes(locC.pack));
      await unlink(packPath(locC.pack));
      repo.close();

      const r = await fleece(repoDir, ['verify', '--json'], env);
      assert.notEqual(r.code, 0, 'verify fails when a backup is damaged');
      const report = JSON.parse(r.stdout) as VerifyJson;
      const verdict = Object.fromEntries(report.backups.map((b) => [b.disk, b]));
      assert.deepEqual(Object.keys(verdict).sort(), ['a', 'b', 'c', 'd']);
      assert.equal(verdict.a!.ok, false);
      assert.match(verdict.a!.problems.join('\n'), encrypt ? /crc32 mismatch|authentication failed/ : /crc32 mismatch/);
      assert.match(verdict.a!.problems.join('\n'), /slot 5\b/);
      assert.equal(verdict.b!.ok, false);
      assert.match(verdict.b!.problems.join('\n'), /index (page 0|root) .*truncated/);
      assert.equal(verdict.c!.ok, false);
      assert.match(verdict.c!.problems.join('\n'), /missing/);
      assert.equal(verdict.d!.ok, true, JSON.stringify(verdict.d));
      // Only d verifies alone cleanly.
      assert.equal((await fleece(repoDir, ['verify', ids.d!.slice(0, 10)], env)).code, 0);

      // A failed restore leaves no partial image: a. over a file already there, which keeps its
      // contents and mode; b. and c. into new names, which stay absent.
      const previous = Buffer.from('an image that was already safe\n');
      await writeFile(join(dir.path, 'a.out'), previous, { mode: 0o640 });
      await chmod(join(dir.path, 'a.out'), 0o640);
      for (const disk of ['a', 'b', 'c']) {
        const out = await fleece(repoDir, ['restore', ids[disk]!, join(dir.path, `${disk}.out`)], env);
        assert.notEqual(out.code, 0, `restore of damaged ${disk} fails`);
        assert.match(out.stderr, /fleece: .*(crc32|truncated|missing|authentication|not in any pack)/);
      }
      assert.ok((await readFile(join(dir.path, 'a.out'))).equals(previous), 'the file at the target is untouched');
      assert.deepEqual((await readdir(dir.path)).filter((n) => n.endsWith('.out') || n.startsWith('.fleece-restore-')).sort(), ['a.out']);
      // A good restore replaces the file (through a symlink: its destination), keeping the mode.
      await symlink('a.out', join(dir.path, 'link.out'));
      const ok = await fleece(repoDir, ['restore', ids.d!, join(dir.path, 'link.out')], env);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(await sha256File(join(dir.path, 'a.out')), await sha256File(join(dir.path, 'd.img')));
      assert.ok((await lstat(join(dir.path, 'link.out'))).isSymbolicLink(), 'the symlink stays a symlink');
      assert.equal((await stat(join(dir.path, 'a.out'))).mode & 0o777, 0o640);
      assert.deepEqual((await readdir(dir.path)).filter((n) => n.startsWith('.fleece-restore-')), []);
      // check reports the structural damage (deleted pack) as an error.
      const check = await fleece(repoDir, ['repo', 'check'], env);
      assert.notEqual(check.code, 0);
    } finally {
      await dir.cleanup();
    }
  });
}
