// An NBD server: a set of named exports offered on any number of TCP and Unix-socket
// listeners. Errors of one client end that client's connection only.

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import { describeError } from '../../core/errors.js';
import { NbdError } from '../errors.js';
import { NbdConnection, type ConnectionOptions } from './connection.js';
import { NbdExport, type NbdExportOptions } from './nbd-export.js';
import type { ExportRegistry } from './session.js';

export type ListenAddress = { readonly host?: string; readonly port: number } | { readonly path: string };

export type NbdServerOptions = Partial<ConnectionOptions>;

const DEFAULTS: ConnectionOptions = {
  maxInFlightRequests: 128,
  maxInFlightBytes: 64 * 1024 * 1024,
  writeBufferLimit: 16 * 1024 * 1024,
  handshakeTimeoutMs: 30_000,
  log: () => {},
};

export class NbdServer implements ExportRegistry {
  readonly #options: ConnectionOptions;
  // Insertion order: the first export is the default one for clients asking for ''.
  readonly #exports = new Map<string, NbdExport>();
  readonly #listeners: Server[] = [];
  readonly #connections = new Set<NbdConnection>();
  // Callers of #shutdown waiting for a connection's 'close'.
  readonly #waiters = new Map<NbdConnection, () => void>();
  #closed = false;

  constructor(options: NbdServerOptions = {}) {
    this.#options = { ...DEFAULTS, ...options };
  }

  /** Offers a device under a name; throws NbdError if the name is taken. */
  addExport(options: NbdExportOptions): NbdExport {
    if (this.#exports.has(options.name)) throw new NbdError('ENBDEXPORT', `export '${options.name}' already exists`);
    const exp = new NbdExport(options);
    this.#exports.set(exp.name, exp);
    return exp;
  }

  /** Stops offering an export and ends its connections once their in-flight requests finish. */
  async removeExport(name: string): Promise<void> {
    const exp = this.#exports.get(name);
    if (!exp) throw new NbdError('ENBDEXPORT', `export '${name}' does not exist`);
    this.#exports.delete(name);
    const users = [...this.#connections].filter((c) => c.export === exp);
    await Promise.all(users.map((c) => this.#shutdown(c)));
  }

  resolve(name: string): NbdExport | undefined {
    return this.#exports.get(name) ?? (name === '' ? this.#exports.values().next().value : undefined);
  }

  list(): readonly NbdExport[] {
    return [...this.#exports.values()];
  }

  /** Connections open now (for tests and metrics). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Starts accepting on a TCP address or a Unix socket path; resolves with the bound address. */
  async listen(address: ListenAddress): Promise<ListenAddress> {
    if (this.#closed) throw new NbdError('ENBDLISTEN', 'server is closed');
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#accept(socket));
    server.on('error', (err) => this.#options.log(`nbd: listener error: ${describeError(err)}`));
    if ('path' in address) await removeStaleSocket(address.path);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const where = 'path' in address ? address.path : `${address.host ?? '0.0.0.0'}:${address.port}`;
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : describeError(err);
        reject(new NbdError('ENBDLISTEN', `cannot listen on '${where}': ${why}`, { cause: err }));
      };
      server.once('error', onError);
      const done = (): void => {
        server.off('error', onError);
        resolve();
      };
      if ('path' in address) server.listen(address.path, done);
      else server.listen(address.port, address.host ?? '127.0.0.1', done);
    });
    this.#listeners.push(server);
    const bound = server.address();
    if (typeof bound === 'string' || bound === null) return { path: 'path' in address ? address.path : String(bound) };
    return { host: bound.address, port: bound.port };
  }

  /** Stops listening, ends every connection (in-flight requests finish), never closes devices. */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed = true;
    // A listener's close callback waits for its connections, so end those meanwhile.
    const listeners = this.#listeners.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    const timer = setTimeout(() => {
      for (const c of this.#connections) c.destroy();
    }, options.timeoutMs ?? 5000);
    try {
      await Promise.all([...this.#connections].map((c) => this.#shutdown(c)));
      await Promise.all(listeners);
    } finally {
      clearTimeout(timer);
    }
  }

  #accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const conn = new NbdConnection(socket, this, this.#options, (c) => {
      this.#connections.delete(c);
      this.#waiters.get(c)?.();
      this.#waiters.delete(c);
    });
    this.#connections.add(conn);
  }

  #shutdown(conn: NbdConnection): Promise<void> {
    if (!this.#connections.has(conn)) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.set(conn, resolve);
      conn.shutdown();
    });
  }
}

/** Unlinks a Unix socket left by a dead server; a live one makes listen fail with EADDRINUSE. */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch(() => undefined);
  if (!stat?.isSocket()) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!alive) await unlink(path).catch(() => {});
}
