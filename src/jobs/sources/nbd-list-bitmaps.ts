// Which qemu:dirty-bitmap:* contexts an NBD export offers (NBD_OPT_LIST_META_CONTEXT), so a
// backup asked for a bitmap the server lacks can say what it has. Best effort: any failure
// (old server, refused option, timeout) yields an empty list, never an error.

import { connect } from 'node:net';
import {
  clientFlags,
  GREETING_SIZE,
  metaContextRequestData,
  optionFrame,
  parseGreeting,
  takeOptionReply,
} from '../../nbd/client/client-handshake.js';
import type { NbdTarget } from '../../nbd/client/nbd-uri.js';
import { ByteQueue } from '../../nbd/protocol/byte-queue.js';
import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_NO_ZEROES,
  OPT_ABORT,
  OPT_LIST_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_META_CONTEXT,
} from '../../nbd/protocol/constants.js';

export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';

/** Names of the dirty-bitmap contexts `target` offers (prefix included), sorted; [] if unknown. */
export async function listDirtyBitmaps(target: NbdTarget, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<string[]> {
  const socket = target.kind === 'unix' ? connect(target.path) : connect({ host: target.host, port: target.port });
  const queue = new ByteQueue();
  const names: string[] = [];
  // Phases: greeting → STRUCTURED_REPLY answer → LIST_META_CONTEXT answers until ACK or error.
  let phase: 'greeting' | 'structured' | 'list' = 'greeting';
  return new Promise<string[]>((resolve) => {
    const finish = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', finish);
      if (!socket.destroyed) socket.end(optionFrame(OPT_ABORT));
      socket.destroy();
      resolve(names.sort());
    };
    const timer = setTimeout(finish, options.timeoutMs ?? 5000);
    options.signal?.addEventListener('abort', finish);
    socket.on('error', finish).on('close', finish);
    socket.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      try {
        if (phase === 'greeting') {
          if (queue.length < GREETING_SIZE) return;
          const flags = parseGreeting(Buffer.from(queue.take(GREETING_SIZE)));
          socket.write(clientFlags(FLAG_C_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES ? FLAG_C_NO_ZEROES : 0)));
          socket.write(optionFrame(OPT_STRUCTURED_REPLY));
          phase = 'structured';
        }
        for (let reply = takeOptionReply(queue); reply; reply = takeOptionReply(queue)) {
          if (phase === 'structured') {
            socket.write(optionFrame(OPT_LIST_META_CONTEXT, metaContextRequestData(target.exportName, [DIRTY_BITMAP_PREFIX])));
            phase = 'list';
          } else if (reply.type === REP_META_CONTEXT && reply.data.length > 4) {
            names.push(reply.data.toString('utf8', 4));
          } else {
            return finish(); // ACK or an error reply: the list is complete
          }
        }
      } catch {
        finish();
      }
    });
  });
}
