// Codec of the client's side of the fixed-newstyle handshake: serializers for the client flags
// and option frames (STRUCTURED_REPLY, SET_META_CONTEXT, GO), and parsers for the server's
// greeting and option replies. Every length read off the wire is capped before it is trusted.

import { NbdError } from '../errors.js';
import type { ByteQueue } from '../protocol/byte-queue.js';
import {
  FLAG_FIXED_NEWSTYLE,
  IHAVEOPT,
  MAX_STRING_LENGTH,
  NBDMAGIC,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
} from '../protocol/constants.js';

/** Largest option reply payload accepted (a context name or an error message is far smaller). */
export const MAX_OPTION_REPLY = 64 * 1024;
export const GREETING_SIZE = 18;

/** The server's 18-byte greeting: returns its handshake flags; throws on anything else. */
export function parseGreeting(bytes: Buffer): number {
  const magic = bytes.readBigUInt64BE(0);
  if (magic !== NBDMAGIC) throw new NbdError('ENBDPROTO', `bad server magic 0x${magic.toString(16)}, expected NBDMAGIC`);
  const opt = bytes.readBigUInt64BE(8);
  if (opt !== IHAVEOPT) throw new NbdError('ENBDPROTO', `server is not newstyle (magic 0x${opt.toString(16)})`);
  const flags = bytes.readUInt16BE(16);
  if (!(flags & FLAG_FIXED_NEWSTYLE)) throw new NbdError('ENBDPROTO', 'server does not speak fixed newstyle');
  return flags;
}

/** The 4-byte client flags. */
export function clientFlags(flags: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32BE(flags >>> 0, 0);
  return buf;
}

/** An option frame: IHAVEOPT, option, length, data. */
export function optionFrame(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.allocUnsafe(OPTION_HEADER_SIZE + data.length);
  buf.writeBigUInt64BE(IHAVEOPT, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(data.length, 12);
  data.copy(buf, OPTION_HEADER_SIZE);
  return buf;
}

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_STRING_LENGTH) throw new NbdError('ENBDEXPORT', `name '${text.slice(0, 40)}…' is longer than ${MAX_STRING_LENGTH} bytes`);
  const buf = Buffer.allocUnsafe(4 + bytes.length);
  buf.writeUInt32BE(bytes.length, 0);
  bytes.copy(buf, 4);
  return buf;
}

/** NBD_OPT_GO / NBD_OPT_INFO data: export name and the info types requested. */
export function infoRequestData(exportName: string, infos: readonly number[]): Buffer {
  const tail = Buffer.allocUnsafe(2 + 2 * infos.length);
  tail.writeUInt16BE(infos.length, 0);
  infos.forEach((info, i) => tail.writeUInt16BE(info, 2 + 2 * i));
  return Buffer.concat([lengthPrefixed(exportName), tail]);
}

/** NBD_OPT_SET/LIST_META_CONTEXT data: export name and context queries. */
export function metaContextRequestData(exportName: string, queries: readonly string[]): Buffer {
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  return Buffer.concat([lengthPrefixed(exportName), count, ...queries.map(lengthPrefixed)]);
}

export interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly data: Buffer;
}

/** Next complete option reply in the queue, or undefined until more bytes arrive. */
export function takeOptionReply(queue: ByteQueue): OptionReply | undefined {
  if (queue.length < OPTION_REPLY_HEADER_SIZE) return undefined;
  const header = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE);
  queue.peek(header, OPTION_REPLY_HEADER_SIZE);
  const magic = header.readBigUInt64BE(0);
  if (magic !== OPTION_REPLY_MAGIC) throw new NbdError('ENBDPROTO', `bad option reply magic 0x${magic.toString(16)}`);
  const length = header.readUInt32BE(16);
  if (length > MAX_OPTION_REPLY) throw new NbdError('ENBDPROTO', `option reply length ${length} exceeds ${MAX_OPTION_REPLY}`);
  if (queue.length < OPTION_REPLY_HEADER_SIZE + length) return undefined;
  queue.skip(OPTION_REPLY_HEADER_SIZE);
  return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: Buffer.from(queue.take(length)) };
}
