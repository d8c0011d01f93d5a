// `npm run bench -- NAME [NAME…]`: runs benchmarks by name and writes their tables to
// BENCHMARKS.md. Benchmarks are never part of `npm test`.

import { describeError } from '../src/core/errors.js';

type Bench = () => Promise<void>;

const benches: Record<string, () => Promise<Bench>> = {
  nbd: async () => (await import('./nbd.js')).runNbdBench,
  s3: async () => (await import('./s3.js')).runS3Bench,
  cbw: async () => (await import('./cbw.js')).runCbwBench,
  repo: async () => (await import('./repo.js')).runRepoBench,
  backup: async () => (await import('./backup.js')).runBackupBench,
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  if (names.length === 0 || names.includes('--help')) {
    process.stdout.write(`usage: npm run bench -- NAME [NAME…]\nbenchmarks: ${Object.keys(benches).join(', ')}\n`);
    return;
  }
  for (const name of names) {
    const load = benches[name];
    if (!load) throw new Error(`unknown benchmark '${name}': expected one of ${Object.keys(benches).join(', ')}`);
    await (await load())();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${describeError(err)}\n`);
  process.exitCode = 1;
});
