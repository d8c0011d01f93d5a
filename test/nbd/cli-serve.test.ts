// `fleece serve` as users run it: a child process serving a raw image (created sparse with
// --create) over TCP or a Unix socket, driven by fio with verification and by qemu-io, with
// clear errors for a missing image, a bad size and a port in use, and a clean exit on SIGTERM.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { requireTools, run, runOk, scratchDir } from '../helpers/tools.js';

const CLI = resolve('dist/src/cli/fleece.cjs');
let dir: { path: string; cleanup: () => Promise<void> };

before(async () => {
  requireTools('fio', 'qemu-io', 'nbdinfo');
  dir = await scratchDir('fleece-serve-');
});
after(() => dir.cleanup());

interface Served {
  readonly child: ChildProcess;
  readonly uri: string;
  stop(): Promise<number | null>;
}

/** Starts `fleece serve ARGS` and resolves with the URI it prints. */
function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no URI printed; stderr: ${stderr}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const line = stdout.split('\n').find((l) => l.startsWith('nbd'));
      if (!line || !stdout.includes('\n')) return;
      clearTimeout(timer);
      res({
        child,
        uri: line.trim(),
        stop: async () => {
          child.kill('SIGTERM');
          return exited;
        },
      });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`serve exited ${code}: ${stderr}`));
    });
  });
}

test('serve --create makes a sparse image, fio verifies writes over a Unix socket, SIGTERM exits 0', async () => {
  const image = join(dir.path, 'disk.img');
  const socket = join(dir.path, 'nbd.sock');
  const served = await serve([image, '--create', '64M', '--socket', socket]);
  try {
    assert.equal(served.uri, `nbd+unix:///disk?socket=${socket}`);
    assert.equal((await stat(image)).size, 64 * 2 ** 20);
    assert.ok((await stat(image)).blocks * 512 < 2 ** 20, 'the new image is sparse');
    const out = await runOk('fio', [
      '--name=verify', '--ioengine=nbd', `--uri=${served.uri}`, '--rw=randwrite', '--bs=4k', '--size=16M',
      '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json',
    ], { timeoutMs: 120_000 });
    const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }).jobs[0]!;
    assert.equal(job.error, 0);
    assert.equal(job.write.io_bytes, 16 * 2 ** 20);
    assert.equal(job.read.io_bytes, 16 * 2 ** 20, 'fio read everything back to verify it');
  } finally {
    assert.equal(await served.stop(), 0, 'clean exit on SIGTERM');
  }
  // The data reached the file itself.
  const bytes = await readFile(image);
  assert.ok(bytes.subarray(0, 16 * 2 ** 20).some((b) => b !== 0));
});

test('serve over TCP with a chosen export name; the default name "" reaches it too; --read-only', async () => {
  const image = join(dir.path, 'tcp.img');
  const served = await serve([image, '--create', '8M', '--listen', '127.0.0.1:0', '--export', 'vm-1']);
  let port: string;
  try {
    const match = /^nbd:\/\/127\.0\.0\.1:(\d+)\/vm-1$/.exec(served.uri);
    assert.ok(match, served.uri);
    port = match[1]!;
    const io = await run('qemu-io', ['-f', 'raw', '-t', 'writeback', '-c', 'write -P 0x42 1M 64k', '-c', 'read -P 0x42 1M 64k', served.uri]);
    assert.equal(io.code, 0, io.stderr);
    assert.doesNotMatch(io.stdout + io.stderr, /Pattern verification failed/);
    const info = JSON.parse(await runOk('nbdinfo', ['--json', `nbd://127.0.0.1:${port}`])) as { exports: Record<string, unknown>[] };
    assert.equal(info.exports[0]!['export-name'], 'vm-1', 'the default export answers with its canonical name');
    assert.equal(info.exports[0]!['export-size'], 8 * 2 ** 20);
  } finally {
    assert.equal(await served.stop(), 0);
  }
  const ro = await serve([image, '--read-only', '--listen', '127.0.0.1:0']);
  try {
    assert.equal((await run('nbdinfo', ['--is', 'read-only', ro.uri])).code, 0);
    const read = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x42 1M 64k', ro.uri]);
    assert.equal(read.code, 0, read.stderr);
    assert.doesNotMatch(read.stdout + read.stderr, /Pattern verification failed/, 'data written before is there');
  } finally {
    assert.equal(await ro.stop(), 0);
  }
});

test('serve --memory serves a RAM disk', async () => {
  const served = await serve(['--memory', '1G', '--listen', '127.0.0.1:0']);
  try {
    const info = JSON.parse(await runOk('nbdinfo', ['--json', served.uri])) as { exports: Record<string, unknown>[] };
    assert.equal(info.exports[0]!['export-size'], 2 ** 30);
    assert.equal(info.exports[0]!['export-name'], 'memory');
  } finally {
    assert.equal(await served.stop(), 0);
  }
});

test('clear errors: missing image, bad size, port in use', async () => {
  const missing = await run(process.execPath, [CLI, 'serve', join(dir.path, 'nope.img')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /image '.*nope\.img' does not exist \(add --create SIZE/);
  const badSize = await run(process.execPath, [CLI, 'serve', join(dir.path, 'x.img'), '--create', '12Q']);
  assert.equal(badSize.code, 2);
  assert.match(badSize.stderr, /invalid image size '12Q'/);
  const badListen = await run(process.execPath, [CLI, 'serve', '--memory', '1M', '--listen', 'localhost']);
  assert.equal(badListen.code, 2);
  assert.match(badListen.stderr, /invalid listen address 'localhost'/);
  const blocker = createServer();
  await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', () => res()));
  const port = (blocker.address() as { port: number }).port;
  try {
    const inUse = await run(process.execPath, [CLI, 'serve', '--memory', '1M', '--listen', `127.0.0.1:${port}`]);
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, new RegExp(`cannot listen on '127.0.0.1:${port}': address already in use`));
  } finally {
    blocker.close();
  }
});
