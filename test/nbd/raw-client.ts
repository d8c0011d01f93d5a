// A deliberately low-level NBD client for tests: it writes whatever bytes a test wants (bad
// magic, lying lengths, half frames) and reads replies byte-exactly. Not for production use.

import { connect, type Socket } from 'node:net';
import * as C from '../../src/nbd/protocol/constants.js';

export class RawClient {
  readonly socket: Socket;
  #buffer = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  #ended = false;
  /** Resolves when the server closed the connection (or it failed). */
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
      this.#waiter?.();
    });
    this.closed = new Promise((resolve) => {
      const done = (): void => {
        this.#ended = true;
        this.#waiter?.();
        resolve();
      };
      socket.on('end', done);
      socket.on('close', done);
      socket.on('error', done);
    });
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Exactly `n` bytes from the server; rejects if it closes first or nothing comes in time. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buffer.length < n) {
      if (this.#ended) throw new Error(`connection closed after ${this.#buffer.length}/${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** Greeting + client flags. */
  async greet(clientFlags = C.FLAG_C_FIXED_NEWSTYLE | C.FLAG_C_NO_ZEROES): Promise<void> {
    const greeting = await this.read(18);
    if (greeting.readBigUInt64BE(0) !== C.NBDMAGIC) throw new Error('bad greeting');
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags, 0);
    this.write(flags);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(C.IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([header, data]));
  }

  /** One option reply: its type and payload. */
  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const header = await this.read(20);
    const length = header.readUInt32BE(16);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: await this.read(length) };
  }

  /** Full handshake with NBD_OPT_GO; returns the export size and transmission flags. */
  async handshake(name: string, structured = false): Promise<{ size: number; flags: number }> {
    await this.greet();
    if (structured) {
      this.sendOption(C.OPT_STRUCTURED_REPLY);
      const r = await this.optionReply();
      if (r.type !== C.REP_ACK) throw new Error(`structured replies refused: ${r.type}`);
    }
    const nameBytes = Buffer.from(name);
    const data = Buffer.alloc(4 + nameBytes.length + 2);
    data.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(data, 4);
    this.sendOption(C.OPT_GO, data);
    let size = -1;
    let flags = 0;
    for (;;) {
      const r = await this.optionReply();
      if (r.type === C.REP_ACK) return { size, flags };
      if (r.type !== C.REP_INFO) throw new Error(`GO failed with reply type 0x${r.type.toString(16)}`);
      if (r.data.readUInt16BE(0) === C.INFO_EXPORT) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      }
    }
  }

  sendRequest(type: number, cookie: bigint, offset: number, length: number, options: { flags?: number; payload?: Buffer } = {}): void {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(C.REQUEST_MAGIC, 0);
    header.writeUInt16BE(options.flags ?? 0, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(offset), 16);
    header.writeUInt32BE(length, 24);
    this.write(options.payload ? Buffer.concat([header, options.payload]) : header);
  }

  /** A simple reply header (the caller reads any READ payload itself). */
  async simpleReply(): Promise<{ error: number; cookie: bigint }> {
    const header = await this.read(16);
    if (header.readUInt32BE(0) !== C.SIMPLE_REPLY_MAGIC) throw new Error(`not a simple reply: 0x${header.readUInt32BE(0).toString(16)}`);
    return { error: header.readUInt32BE(4), cookie: header.readBigUInt64BE(8) };
  }

  /** One structured chunk. */
  async chunk(): Promise<{ flags: number; type: number; cookie: bigint; payload: Buffer }> {
    const header = await this.read(20);
    if (header.readUInt32BE(0) !== C.STRUCTURED_REPLY_MAGIC) throw new Error('not a structured reply');
    const payload = await this.read(header.readUInt32BE(16));
    return { flags: header.readUInt16BE(4), type: header.readUInt16BE(6), cookie: header.readBigUInt64BE(8), payload };
  }

  destroy(): void {
    this.socket.destroy();
  }
}
