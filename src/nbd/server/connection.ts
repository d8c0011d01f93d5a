// One client socket: feeds received bytes to the handshake, then to the transmission phase;
// batches replies (cork until the next turn of the event loop), honours backpressure both
// ways, and ends only this connection on errors or garbage, never the server.

import type { Socket } from 'node:net';
import { describeError } from '../../core/errors.js';
import { ByteQueue } from '../protocol/byte-queue.js';
import { HandshakeParser, serverGreeting } from '../protocol/handshake.js';
import { HandshakePhase } from './handshake-phase.js';
import type { NbdExport } from './nbd-export.js';
import type { ConnectionIo, ExportRegistry } from './session.js';
import { TransmissionPhase, type TransmissionLimits } from './transmission-phase.js';

export interface ConnectionOptions extends TransmissionLimits {
  /** Bytes queued on the socket before we stop taking requests until 'drain'. */
  readonly writeBufferLimit: number;
  /** Handshakes idle longer than this are dropped. */
  readonly handshakeTimeoutMs: number;
  readonly log: (message: string) => void;
}

export class NbdConnection implements ConnectionIo {
  readonly #socket: Socket;
  readonly #options: ConnectionOptions;
  readonly #queue = new ByteQueue();
  readonly #abort = new AbortController();
  readonly #onClosed: (conn: NbdConnection) => void;
  #handshake: { parser: HandshakeParser; phase: HandshakePhase; timer: NodeJS.Timeout } | undefined;
  #transmission: TransmissionPhase | undefined;
  #export: NbdExport | undefined;
  #corked = false;
  #reading = true;
  #ending = false;
  #closed = false;

  constructor(socket: Socket, registry: ExportRegistry, options: ConnectionOptions, onClosed: (conn: NbdConnection) => void) {
    this.#socket = socket;
    this.#options = options;
    this.#onClosed = onClosed;
    socket.setNoDelay(true);
    const timer = setTimeout(() => this.#fail('handshake timed out'), options.handshakeTimeoutMs);
    timer.unref();
    this.#handshake = { parser: new HandshakeParser(this.#queue), phase: new HandshakePhase((b) => this.send(b), registry), timer };
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#pump());
    socket.on('end', () => this.#endWhenIdle());
    socket.on('error', (err) => this.#options.log(`nbd: connection error: ${describeError(err)}`));
    socket.on('close', () => this.#onClose());
    socket.write(serverGreeting());
  }

  /** The export this connection transmits on, once past the handshake. */
  get export(): NbdExport | undefined {
    return this.#export;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get writeBlocked(): boolean {
    return this.#socket.writableLength > this.#options.writeBufferLimit;
  }

  send(buf: Buffer, onWritten?: () => void): void {
    if (this.#closed) return;
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      setImmediate(this.#uncork);
    }
    if (onWritten) this.#socket.write(buf, onWritten);
    else this.#socket.write(buf);
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    if (!this.#closed) this.#socket.uncork();
  };

  /** Stops taking requests, lets in-flight ones finish, then closes. */
  shutdown(): void {
    this.#transmission?.stop();
    this.#endWhenIdle();
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#ending) return;
    this.#queue.push(chunk);
    this.#pump();
  }

  #pump(): void {
    if (this.#closed || this.#ending) return;
    try {
      if (this.#handshake) this.#pumpHandshake();
      const t = this.#transmission;
      if (t) {
        if (t.pump() === 'disconnect') this.#endWhenIdle();
        this.#setReading(!t.saturated);
      }
    } catch (err) {
      this.#fail(describeError(err));
    }
  }

  #pumpHandshake(): void {
    const hs = this.#handshake!;
    for (let event = hs.parser.next(); event; event = hs.parser.next()) {
      const outcome = hs.phase.handle(event);
      if (outcome.kind === 'close') {
        this.#options.log(`nbd: closing during handshake: ${outcome.reason}`);
        this.#endWhenIdle();
        return;
      }
      if (outcome.kind === 'transmission') {
        clearTimeout(hs.timer);
        this.#handshake = undefined;
        this.#export = outcome.session.export;
        const t = new TransmissionPhase(this, this.#queue, outcome.session, this.#options);
        t.onSettled = () => this.#pump();
        this.#transmission = t;
        return;
      }
    }
  }

  #setReading(reading: boolean): void {
    if (reading === this.#reading) return;
    this.#reading = reading;
    if (reading) this.#socket.resume();
    else this.#socket.pause();
  }

  #endWhenIdle(): void {
    if (this.#ending) return;
    this.#ending = true;
    const finish = (): void => {
      this.#uncork();
      this.#socket.end();
      // A peer that never closes its side must not keep us (or server.close()) waiting.
      setTimeout(() => this.#socket.destroy(), 2000).unref();
    };
    if (this.#transmission) this.#transmission.whenIdle(finish);
    else finish();
  }

  #fail(reason: string): void {
    this.#options.log(`nbd: dropping connection: ${reason}`);
    this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#handshake) clearTimeout(this.#handshake.timer);
    this.#abort.abort();
    this.#queue.clear();
    this.#onClosed(this);
  }
}
