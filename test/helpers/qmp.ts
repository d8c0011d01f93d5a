// A minimal QMP client for tests that drive qemu-storage-daemon: reads the greeting, enters
// command mode, and runs commands one reply at a time by id; asynchronous events are ignored.

import { connect, type Socket } from 'node:net';

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`qmp ${command}: ${errorClass}: ${description}`);
  }
}

interface Waiter {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

export class Qmp {
  readonly #socket: Socket;
  readonly #waiters = new Map<string, Waiter>();
  #nextId = 1;
  #buffer = '';
  #greeting: ((value: unknown) => void) | undefined;
  #failure: Error | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.#onData(text));
    socket.on('close', () => this.#fail(new Error('qmp connection closed')));
    socket.on('error', (err) => this.#fail(err));
  }

  /** Connects to a QMP unix socket, waits for the greeting and negotiates capabilities. */
  static async connect(path: string): Promise<Qmp> {
    const socket = connect(path);
    const qmp = new Qmp(socket);
    await new Promise<unknown>((resolve, reject) => {
      qmp.#greeting = resolve;
      socket.once('error', reject);
    });
    await qmp.execute('qmp_capabilities');
    return qmp;
  }

  /** Runs one command; resolves with its `return` value, rejects with QmpError on `error`. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = `fleece-${this.#nextId++}`;
    return new Promise<T>((resolve, reject) => {
      this.#waiters.set(id, { command, resolve: resolve as (value: unknown) => void, reject });
      this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(text: string): void {
    this.#buffer += text;
    for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#onMessage(JSON.parse(line) as Record<string, unknown>);
    }
  }

  #onMessage(message: Record<string, unknown>): void {
    if ('QMP' in message) {
      this.#greeting?.(message);
      this.#greeting = undefined;
      return;
    }
    if ('event' in message) return;
    const id = typeof message.id === 'string' ? message.id : undefined;
    const waiter = id ? this.#waiters.get(id) : undefined;
    if (!waiter) return;
    this.#waiters.delete(id!);
    const error = message.error as { class?: string; desc?: string } | undefined;
    if (error) waiter.reject(new QmpError(waiter.command, error.class ?? 'GenericError', error.desc ?? 'unknown error'));
    else waiter.resolve(message.return);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const waiter of this.#waiters.values()) waiter.reject(err);
    this.#waiters.clear();
  }
}
