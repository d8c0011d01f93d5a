// The client's handshake: greeting, client flags, STRUCTURED_REPLY, SET_META_CONTEXT and GO,
// giving what the export announces. Runs over a `next(take)` that waits for bytes, so it never
// touches the socket itself.

import { NbdError } from '../errors.js';
import type { ByteQueue } from '../protocol/byte-queue.js';
import {
  DEFAULT_MAX_PAYLOAD,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_NO_ZEROES,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  OPT_GO,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_INFO,
  REP_META_CONTEXT,
} from '../protocol/constants.js';
import {
  clientFlags,
  GREETING_SIZE,
  infoRequestData,
  metaContextRequestData,
  optionFrame,
  parseGreeting,
  takeOptionReply,
  type OptionReply,
} from './client-handshake.js';

export interface ExportInfo {
  readonly exportName: string;
  readonly size: number;
  /** Transmission flags (FLAG_* of protocol/constants). */
  readonly flags: number;
  readonly structuredReplies: boolean;
  /** Negotiated metadata contexts: name → id used in BLOCK_STATUS chunks. */
  readonly contexts: ReadonlyMap<string, number>;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  /** Largest READ/WRITE payload sent (the server's maximum, capped at 32 MiB). */
  readonly maxPayload: number;
}

export interface NegotiateIo {
  readonly queue: ByteQueue;
  /** Resolves once `take` returns a value, waiting for bytes as needed. */
  until<T>(take: () => T | undefined): Promise<T>;
  send(bytes: Buffer): void;
}

/** Performs the fixed-newstyle handshake for one export. */
export async function negotiate(io: NegotiateIo, exportName: string, queries: readonly string[]): Promise<ExportInfo> {
  const greeting = await io.until(() => (io.queue.length >= GREETING_SIZE ? io.queue.take(GREETING_SIZE) : undefined));
  const serverFlags = parseGreeting(Buffer.from(greeting));
  io.send(clientFlags(FLAG_C_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES ? FLAG_C_NO_ZEROES : 0)));
  const reply = (option: number): Promise<OptionReply> =>
    io.until(() => takeOptionReply(io.queue)).then((r) => {
      if (r.option !== option) throw new NbdError('ENBDPROTO', `option reply for ${r.option} while waiting for ${option}`);
      return r;
    });

  io.send(optionFrame(OPT_STRUCTURED_REPLY));
  const structuredReplies = (await reply(OPT_STRUCTURED_REPLY)).type === REP_ACK;

  const contexts = new Map<string, number>();
  if (structuredReplies && queries.length > 0) {
    io.send(optionFrame(OPT_SET_META_CONTEXT, metaContextRequestData(exportName, queries)));
    for (;;) {
      const r = await reply(OPT_SET_META_CONTEXT);
      if (r.type === REP_META_CONTEXT && r.data.length >= 4) contexts.set(r.data.toString('utf8', 4), r.data.readUInt32BE(0));
      else break; // ACK, or an error: the export simply has no contexts for us
    }
  }

  io.send(optionFrame(OPT_GO, infoRequestData(exportName, [INFO_BLOCK_SIZE])));
  let size: number | undefined;
  let flags = 0;
  let blockSizes = { min: 1, preferred: 4096, max: DEFAULT_MAX_PAYLOAD };
  for (;;) {
    const r = await reply(OPT_GO);
    if (r.type === REP_ACK) break;
    if (r.type & 0x80000000) {
      const why = r.data.length > 0 ? r.data.toString('utf8') : `error 0x${r.type.toString(16)}`;
      throw new NbdError('ENBDEXPORT', `server refused export '${exportName}': ${why}`);
    }
    if (r.type !== REP_INFO || r.data.length < 2) continue;
    const info = r.data.readUInt16BE(0);
    if (info === INFO_EXPORT && r.data.length === 12) {
      const high = r.data.readUInt32BE(2);
      if (high >= 2 ** 21) throw new NbdError('ENBDPROTO', `export size beyond 2^53 bytes`);
      size = high * 2 ** 32 + r.data.readUInt32BE(6);
      flags = r.data.readUInt16BE(10);
    } else if (info === INFO_BLOCK_SIZE && r.data.length === 14) {
      blockSizes = { min: r.data.readUInt32BE(2), preferred: r.data.readUInt32BE(6), max: r.data.readUInt32BE(10) };
    }
  }
  if (size === undefined) throw new NbdError('ENBDPROTO', `server sent no size for export '${exportName}'`);
  const min = blockSizes.min >= 1 && blockSizes.min <= 65536 ? blockSizes.min : 1;
  return {
    exportName,
    size,
    flags,
    structuredReplies,
    contexts,
    minBlockSize: min,
    preferredBlockSize: Math.max(min, blockSizes.preferred || 4096),
    maxPayload: Math.max(min, Math.min(blockSizes.max || DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PAYLOAD)),
  };
}
