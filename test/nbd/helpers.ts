// Shared by the NBD tests: an in-process server on a Unix socket in a scratch directory, and a
// device wrapper whose capabilities a test chooses.

import { join } from 'node:path';
import type { BlockCapabilities, BlockDevice, Extent, IoOptions, WriteOptions, ZeroOptions } from '../../src/block/block-device.js';
import { BlockError } from '../../src/block/errors.js';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import { NbdServer, type NbdExportOptions, type NbdServerOptions } from '../../src/nbd/index.js';
import { scratchDir } from '../helpers/tools.js';

export interface TestServer {
  readonly server: NbdServer;
  readonly dir: string;
  readonly socket: string;
  /** nbd+unix URI of an export. */
  uri(name?: string): string;
  stop(): Promise<void>;
}

/** Starts a server with the given exports on a Unix socket. */
export async function startTestServer(exports: NbdExportOptions[], options: NbdServerOptions = {}): Promise<TestServer> {
  const scratch = await scratchDir('fleece-nbd-');
  const socket = join(scratch.path, 'nbd.sock');
  const server = new NbdServer(options);
  for (const e of exports) server.addExport(e);
  await server.listen({ path: socket });
  return {
    server,
    dir: scratch.path,
    socket,
    uri: (name = exports[0]?.name ?? '') => `nbd+unix:///${encodeURIComponent(name)}?socket=${socket}`,
    stop: async () => {
      await server.close();
      await scratch.cleanup();
    },
  };
}

/** One call a RecordingDevice saw. */
export interface DeviceCall {
  readonly op: 'read' | 'write' | 'writeZeroes' | 'discard' | 'flush' | 'cache' | 'blockStatus';
  readonly offset: number;
  readonly length: number;
  readonly fua: boolean;
  readonly mayTrim: boolean;
  readonly fastZero: boolean;
}

/** A memory device with chosen capabilities that records every call (to see flags arrive). */
export class RecordingDevice implements BlockDevice {
  readonly calls: DeviceCall[] = [];
  readonly inner: MemoryDevice;
  readonly capabilities: BlockCapabilities;

  constructor(size: number, caps: Partial<BlockCapabilities> = {}) {
    this.inner = new MemoryDevice(size, { readOnly: caps.readOnly ?? false });
    this.capabilities = { ...this.inner.capabilities, ...caps };
  }

  get size(): number {
    return this.inner.size;
  }

  #log(op: DeviceCall['op'], offset: number, length: number, o?: ZeroOptions): void {
    this.calls.push({ op, offset, length, fua: o?.fua ?? false, mayTrim: o?.mayTrim ?? false, fastZero: o?.fastZero ?? false });
  }

  read(offset: number, target: Uint8Array, o?: IoOptions): Promise<void> {
    this.#log('read', offset, target.length);
    return this.inner.read(offset, target, o);
  }
  write(offset: number, data: Uint8Array, o?: WriteOptions): Promise<void> {
    this.#log('write', offset, data.length, o);
    return this.inner.write(offset, data, o);
  }
  async writeZeroes(offset: number, length: number, o?: ZeroOptions): Promise<void> {
    this.#log('writeZeroes', offset, length, o);
    if (o?.fastZero && !this.capabilities.canFastZero) throw new BlockError('ENOTSUP', 'fast zero unsupported');
    return this.inner.writeZeroes(offset, length, o);
  }
  discard(offset: number, length: number, o?: WriteOptions): Promise<void> {
    this.#log('discard', offset, length, o);
    return this.inner.discard(offset, length, o);
  }
  flush(o?: IoOptions): Promise<void> {
    this.#log('flush', 0, 0);
    return this.inner.flush(o);
  }
  cache(offset: number, length: number, o?: IoOptions): Promise<void> {
    this.#log('cache', offset, length);
    return this.inner.cache(offset, length, o);
  }
  blockStatus(offset: number, length: number, o?: IoOptions): Promise<Extent[]> {
    this.#log('blockStatus', offset, length);
    return this.inner.blockStatus(offset, length, o);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Deterministic bytes for pattern checks. */
export function patternBytes(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}
