// An NBD client connection: the handshake, then many requests in flight on one socket, each
// tagged with a cookie and completed when its reply (simple, or the DONE chunk of a structured
// reply) arrives, in whatever order the server sends them.

import { connect as netConnect, type Socket } from 'node:net';
import { BlockError } from '../../block/errors.js';
import { AbortedError, describeError } from '../../core/errors.js';
import { ByteQueue } from '../protocol/byte-queue.js';
import { CMD_BLOCK_STATUS, CMD_DISC, CMD_READ, CMD_WRITE } from '../protocol/constants.js';
import { blockCodeFor } from './client-errno.js';
import { requestHeader } from './client-request.js';
import { negotiate, type ExportInfo } from './negotiate.js';
import { parseNbdUri, type NbdTarget } from './nbd-uri.js';
import { ReplyParser, type ReplyEvent } from './reply-parser.js';

export interface NbdClientOptions {
  /** Metadata contexts to ask for (e.g. 'base:allocation', 'qemu:dirty-bitmap:daily'). */
  readonly metaContexts?: readonly string[];
  /** Most requests in flight at once; later ones wait for a slot. */
  readonly maxInFlight?: number;
  /** Give up if the server has not finished the handshake by then (default 30 s). */
  readonly handshakeTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Extents per negotiated context id: [length, flags] pairs as the server sent them. */
export type StatusReply = ReadonlyMap<number, Uint32Array>;

interface Pending {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  // Dropped when the caller aborts: late data must not land in a buffer it got back.
  target: Uint8Array | undefined;
  covered: number;
  readonly unlisten: () => void;
  error: BlockError | undefined;
  readonly status: Map<number, Uint32Array>;
  readonly resolve: (status: StatusReply) => void;
  readonly reject: (err: unknown) => void;
}

const OP_NAMES = ['read', 'write', 'disc', 'flush', 'trim', 'cache', 'write-zeroes', 'block-status'];
/**
 * The socket reads into one buffer of this size, reused for every read: a fresh buffer per read
 * (Node's default) is garbage at the rate data arrives, and read payloads only pass through on
 * their way into the caller's buffer.
 */
const READ_BUFFER = 256 * 1024;

/** Where the socket's reads go: the handshake first, then the transmission phase. */
interface Inbox {
  deliver: (chunk: Buffer) => void;
}

export class NbdClient {
  readonly info: ExportInfo;
  readonly #socket: Socket;
  readonly #pending = new Map<bigint, Pending>();
  readonly #maxInFlight: number;
  // Requests waiting for an in-flight slot, FIFO.
  readonly #slotWaiters: Array<() => void> = [];
  #nextCookie = 1n;
  #failure: Error | undefined;
  #closing: Promise<void> | undefined;

  private constructor(socket: Socket, inbox: Inbox, queue: ByteQueue, info: ExportInfo, maxInFlight: number) {
    this.#socket = socket;
    this.info = info;
    this.#maxInFlight = maxInFlight;
    const parser = new ReplyParser(queue, (cookie) => this.#pending.get(cookie));
    const pump = (): void => {
      try {
        for (let event = parser.next(); event; event = parser.next()) this.#onEvent(event);
      } catch (err) {
        this.#fail(new BlockError('EIO', `nbd server broke the protocol: ${describeError(err)}`, { cause: err }));
        socket.destroy();
      }
    };
    inbox.deliver = (chunk) => {
      queue.push(chunk);
      pump();
      queue.ownLast(); // the socket reuses chunk's memory for its next read
    };
    socket.on('close', () => this.#fail(new BlockError('EIO', 'connection to the nbd server closed')));
    pump();
  }

  /** Connects to an NBD URI or target and negotiates the export. */
  static async connect(target: string | NbdTarget, options: NbdClientOptions = {}): Promise<NbdClient> {
    const where = typeof target === 'string' ? parseNbdUri(target) : target;
    const queue = new ByteQueue();
    const inbox: Inbox = { deliver: () => {} };
    const onread = {
      buffer: Buffer.allocUnsafe(READ_BUFFER),
      callback: (n: number, buffer: Uint8Array): boolean => {
        inbox.deliver(Buffer.from(buffer.buffer, buffer.byteOffset, n));
        return true;
      },
    };
    const socket = where.kind === 'unix' ? netConnect({ path: where.path, onread }) : netConnect({ host: where.host, port: where.port, noDelay: true, onread });
    const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    inbox.deliver = (chunk) => {
      queue.push(Buffer.from(chunk)); // a copy: the socket reuses chunk's memory
      wake?.();
    };
    const onEnd = (err?: Error): void => {
      const place = where.kind === 'unix' ? where.path : `${where.host}:${where.port}`;
      failure ??= new BlockError('EIO', `cannot negotiate with nbd server '${place}': ${err ? describeError(err) : 'connection closed'}`, { cause: err });
      wake?.();
    };
    const onAbort = (): void => {
      failure ??= new AbortedError();
      socket.destroy();
    };
    const onClose = (): void => onEnd();
    // A server that accepts but never finishes the handshake must not hang the caller.
    const timer = setTimeout(() => {
      failure ??= new BlockError('EIO', `nbd server did not finish the handshake within ${handshakeTimeoutMs} ms`);
      socket.destroy();
    }, handshakeTimeoutMs);
    socket.on('error', onEnd).on('close', onClose);
    options.signal?.addEventListener('abort', onAbort);
    try {
      if (options.signal?.aborted) onAbort();
      const info = await negotiate(
        {
          queue,
          send: (bytes) => socket.write(bytes),
          until: async (take) => {
            for (;;) {
              const value = take();
              if (value !== undefined) return value;
              if (failure) throw failure;
              await new Promise<void>((resolve) => (wake = resolve));
              wake = undefined;
            }
          },
        },
        where.exportName,
        options.metaContexts ?? ['base:allocation'],
      );
      socket.off('close', onClose);
      socket.on('error', () => {}); // 'close' follows; the instance reports it
      return new NbdClient(socket, inbox, queue, info, Math.max(1, options.maxInFlight ?? 64));
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
      socket.off('error', onEnd);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Sends one request and resolves when its reply is complete; BlockError with the server's errno on failure. */
  async request(type: number, flags: number, offset: number, length: number, options: { target?: Uint8Array; data?: Uint8Array; signal?: AbortSignal } = {}): Promise<StatusReply> {
    if (options.signal?.aborted) throw new AbortedError('operation aborted', { cause: options.signal.reason });
    if (this.#closing) throw new BlockError('ESHUTDOWN', 'nbd client is closed');
    if (this.#failure) throw this.#failure;
    if (this.#pending.size >= this.#maxInFlight) await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    if (this.#failure) throw this.#failure;
    const cookie = this.#nextCookie++;
    const { signal } = options;
    const reply = new Promise<StatusReply>((resolve, reject) => {
      // An abort answers the caller now; the entry stays until the server's reply (the slot is still used).
      const onAbort = (): void => {
        const p = this.#pending.get(cookie);
        if (p) p.target = undefined;
        reject(new AbortedError('operation aborted; the request was already sent', { cause: signal?.reason }));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const unlisten = (): void => signal?.removeEventListener('abort', onAbort);
      this.#pending.set(cookie, { type, offset, length, target: options.target, covered: 0, error: undefined, status: new Map(), resolve, reject, unlisten });
    });
    reply.catch(() => {}); // rejections are seen by the caller's await below
    this.#corkUntilImmediate();
    let flowing = this.#socket.write(requestHeader(flags, type, cookie, offset, length));
    if (type === CMD_WRITE && options.data) flowing = this.#socket.write(options.data);
    // Backpressure: a sender waits for the socket to drain before its reply counts as pending work.
    if (!flowing && !this.#socket.destroyed) await this.#drained();
    return reply;
  }

  // Requests sent during one turn of the event loop leave in one writev: replies completing
  // together start their callers' next requests together, and a syscall per 28-byte header
  // would cost both ends more than the headers. setImmediate runs before the loop waits again.
  #corked = false;

  #corkUntilImmediate(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#socket.cork();
    setImmediate(() => {
      this.#corked = false;
      this.#socket.uncork();
    });
  }

  // One promise shared by every sender waiting for 'drain' (no listener per request).
  #drain: Promise<void> | undefined;

  #drained(): Promise<void> {
    this.#drain ??= new Promise<void>((resolve) => {
      const done = (): void => {
        this.#socket.off('drain', done).off('close', done);
        this.#drain = undefined;
        resolve();
      };
      this.#socket.on('drain', done).on('close', done);
    });
    return this.#drain;
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Waits for in-flight requests, sends DISC and closes the socket. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      while (this.#pending.size > 0 && !this.#failure) {
        await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
      }
      const closed = new Promise<void>((resolve) => (this.#socket.destroyed ? resolve() : this.#socket.once('close', () => resolve())));
      if (!this.#failure) this.#socket.end(requestHeader(0, CMD_DISC, this.#nextCookie++, 0, 0));
      const timer = setTimeout(() => this.#socket.destroy(), 5000);
      await closed;
      clearTimeout(timer);
    })();
    return this.#closing;
  }

  #onEvent(event: ReplyEvent): void {
    const p = this.#pending.get(event.cookie)!;
    const where = `${OP_NAMES[p.type] ?? `command ${p.type}`} ${p.offset}+${p.length}`;
    switch (event.kind) {
      case 'simple':
        if (event.error !== 0) p.error = new BlockError(blockCodeFor(event.error), `${where}: nbd server returned ${blockCodeFor(event.error)} (errno ${event.error})`);
        return this.#finish(event.cookie, p);
      case 'data':
      case 'hole': {
        const length = event.kind === 'data' ? event.data.length : event.length;
        const at = event.offset - p.offset;
        if (p.type !== CMD_READ || at < 0 || at + length > p.length) {
          return this.#protocolError(`${where}: reply chunk ${event.offset}+${length} outside the request`);
        }
        if (p.target) {
          if (event.kind === 'data') p.target.set(event.data, at);
          else p.target.fill(0, at, at + length);
        }
        p.covered += length;
        break;
      }
      case 'status':
        if (p.type !== CMD_BLOCK_STATUS) return this.#protocolError(`${where}: block status chunk for another command`);
        p.status.set(event.contextId, event.descriptors);
        break;
      case 'error':
        p.error ??= new BlockError(
          blockCodeFor(event.error),
          `${where}: nbd server returned ${blockCodeFor(event.error)}${event.message ? `: ${event.message}` : ''}`,
        );
        break;
      case 'none':
        break;
      default:
        event satisfies never;
    }
    if (event.done) this.#finish(event.cookie, p);
  }

  #finish(cookie: bigint, p: Pending): void {
    this.#pending.delete(cookie);
    p.unlisten();
    this.#slotWaiters.shift()?.();
    if (p.error) return p.reject(p.error);
    if (p.type === CMD_READ && p.covered !== p.length) {
      return p.reject(new BlockError('EIO', `read ${p.offset}+${p.length}: server replied with ${p.covered} bytes`));
    }
    p.resolve(p.status);
  }

  #protocolError(message: string): void {
    this.#fail(new BlockError('EIO', `nbd server broke the protocol: ${message}`));
    this.#socket.destroy();
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const p of this.#pending.values()) {
      p.unlisten();
      p.reject(this.#failure);
    }
    this.#pending.clear();
    for (const wake of this.#slotWaiters.splice(0)) wake();
  }
}
