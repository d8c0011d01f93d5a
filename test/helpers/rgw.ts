// A throwaway Ceph radosgw for a test file (scripts/rgw.sh on free ports and a private dir):
// start it in `before`, stop it in `after`. A cluster that fails to start fails the test.
// It can kill and restart just the radosgw daemon (the memstore OSD keeps the data).

import { spawn, spawnSync } from 'node:child_process';
import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { S3Store } from '../../src/repo/stores/s3-store.js';
import { requireTools, runOk, scratchDir } from './tools.js';

const RGW_SH = resolve('scripts/rgw.sh');

export interface Rgw {
  readonly endpoint: string;
  readonly dir: string;
  /** AWS_* variables for the SDK and for child `fleece` processes. */
  readonly env: Readonly<Record<string, string>>;
  /** An S3Store on a bucket of this gateway (created if missing), prefix '' unless given. */
  store(bucket: string, prefix?: string): Promise<S3Store>;
  /** SIGKILLs the radosgw daemon only (mon, osd, mgr keep running and keep the data). */
  killGateway(): void;
  /** Starts radosgw again on the same port and waits until it answers. */
  restartGateway(): Promise<void>;
  /** Stops every daemon and removes the directory. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? done(address.port) : fail(new Error('no port'))));
    });
  });
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILLs the daemon whose `timeout` wrapper's pid is in `pidFile` (our own processes only). */
function killChildren(pidFile: string): void {
  let wrapper: number;
  try {
    wrapper = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  const dir = dirname(pidFile);
  for (const pid of childPids(wrapper)) {
    try {
      // Only a daemon of this cluster (its command line names our directory), never a reused pid.
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) continue;
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(2000) });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`radosgw at ${url} did not answer within ${timeoutMs} ms`, { cause: err });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Starts a single-node Ceph with radosgw; throws (fails the test) when it cannot. */
export async function startRgw(): Promise<Rgw> {
  requireTools('ceph-mon', 'ceph-osd', 'ceph-mgr', 'radosgw', 'radosgw-admin', 'ceph', 'monmaptool', 'curl');
  const scratch = await scratchDir('fleece-rgw-');
  const dir = join(scratch.path, 'ceph');
  const [port, monPort, monV1Port] = [await freePort(), await freePort(), await freePort()];
  const env = { ...process.env, MON_PORT: String(monPort), MON_V1_PORT: String(monV1Port), MEMSTORE_BYTES: String(3 * 2 ** 30), LIFE: '1800' };
  const stopCluster = (): void => {
    // radosgw hangs on SIGTERM once its monitor is gone: kill it first, and hard.
    killChildren(join(dir, 'rgw.pid'));
    spawnSync(RGW_SH, ['down', dir], { env, stdio: 'ignore', timeout: 30_000 });
    for (const name of ['mgr', 'osd', 'mon']) killChildren(join(dir, `${name}.pid`));
  };
  let out: string;
  try {
    out = await runOk(RGW_SH, ['up', dir, String(port)], { env, timeoutMs: 240_000 });
  } catch (err) {
    let log = '';
    try {
      log = readFileSync(join(dir, 'log', 'rgw.out'), 'utf8').slice(-2000);
    } catch {
      // no radosgw log yet
    }
    stopCluster();
    await scratch.cleanup();
    throw new Error(`could not start radosgw: ${(err as Error).message}${log ? `\nradosgw log:\n${log}` : ''}`);
  }
  const vars: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^(AWS_[A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!;
  }
  // Child fleece processes must not write a cache into the user's home.
  vars.FLEECE_CACHE_DIR = join(scratch.path, 'cache');
  const endpoint = vars.AWS_ENDPOINT_URL!;
  Object.assign(process.env, vars);

  return {
    endpoint,
    dir,
    env: vars,
    async store(bucket: string, prefix = ''): Promise<S3Store> {
      const store = new S3Store({ bucket, prefix, endpoint, region: vars.AWS_REGION });
      await store.ensureBucket();
      return store;
    },
    killGateway(): void {
      killChildren(join(dir, 'rgw.pid'));
    },
    async restartGateway(): Promise<void> {
      const log = openSync(join(dir, 'log', 'rgw.out'), 'a');
      const child = spawn('timeout', ['1800', 'radosgw', '-c', join(dir, 'ceph.conf'), '-n', 'client.rgw.a', '-f'], { stdio: ['ignore', log, log], detached: true });
      closeSync(log);
      child.unref();
      writeFileSync(join(dir, 'rgw.pid'), `${child.pid}\n`);
      await waitForHttp(`${endpoint}/`, 90_000);
    },
    async stop(): Promise<void> {
      stopCluster();
      for (const name of Object.keys(vars)) if (process.env[name] === vars[name]) delete process.env[name];
      await scratch.cleanup();
    },
  };
}
