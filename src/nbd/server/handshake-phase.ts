// The option haggling of a fixed-newstyle handshake: answers each option, remembers what the
// client negotiated (structured replies, meta contexts), and ends with a session to transmit
// on, or with a request to close. Unknown options get ERR_UNSUP and haggling goes on.

import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  INFO_DESCRIPTION,
  INFO_NAME,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_LIST_META_CONTEXT,
  OPT_SET_META_CONTEXT,
  OPT_STARTTLS,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_POLICY,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
} from '../protocol/constants.js';
import {
  exportNameReply,
  infoBlockSizeReply,
  infoExportReply,
  infoStringReply,
  metaContextReply,
  optionReply,
  parseInfoRequest,
  parseMetaContextRequest,
  serverReply,
  type HandshakeEvent,
} from '../protocol/handshake.js';
import { matchContexts, type SelectedContext } from './meta-context.js';
import type { NbdExport } from './nbd-export.js';
import type { ExportRegistry, TransmissionSession } from './session.js';

/** What the connection does after an event: keep haggling, close, or start transmission. */
export type HandshakeOutcome =
  | { readonly kind: 'continue' }
  | { readonly kind: 'close'; readonly reason: string }
  | { readonly kind: 'transmission'; readonly session: TransmissionSession };

const CONTINUE: HandshakeOutcome = { kind: 'continue' };

export class HandshakePhase {
  readonly #send: (buf: Buffer) => void;
  readonly #registry: ExportRegistry;
  #noZeroes = false;
  #structured = false;
  // The last SET_META_CONTEXT: valid only for the export it named.
  #meta: { export: NbdExport; contexts: SelectedContext[] } | undefined;

  constructor(send: (buf: Buffer) => void, registry: ExportRegistry) {
    this.#send = send;
    this.#registry = registry;
  }

  /** Handles one parsed event from the client. */
  handle(event: HandshakeEvent): HandshakeOutcome {
    if (event.kind === 'client-flags') {
      if ((event.flags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
        return { kind: 'close', reason: `unknown client flags 0x${event.flags.toString(16)}` };
      }
      this.#noZeroes = (event.flags & FLAG_C_NO_ZEROES) !== 0;
      return CONTINUE;
    }
    if (event.kind === 'oversized') return this.#reply(event.option, REP_ERR_TOO_BIG, `option length ${event.length} is too large`);
    const { option, data } = event;
    switch (option) {
      case OPT_EXPORT_NAME:
        return this.#exportName(data.toString('utf8'));
      case OPT_ABORT:
        this.#send(optionReply(option, REP_ACK));
        return { kind: 'close', reason: 'client aborted the handshake' };
      case OPT_LIST:
        return this.#list(data);
      case OPT_INFO:
      case OPT_GO:
        return this.#infoOrGo(option, data);
      case OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.#reply(option, REP_ERR_INVALID, 'structured reply option takes no data');
        this.#structured = true;
        return this.#reply(option, REP_ACK);
      case OPT_LIST_META_CONTEXT:
      case OPT_SET_META_CONTEXT:
        return this.#metaContext(option, data);
      case OPT_STARTTLS:
        return this.#reply(option, REP_ERR_POLICY, 'tls is not enabled on this server');
      default:
        return this.#reply(option, REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  #reply(option: number, type: number, message?: string): HandshakeOutcome {
    this.#send(optionReply(option, type, message));
    return CONTINUE;
  }

  #exportName(name: string): HandshakeOutcome {
    const exp = this.#registry.resolve(name);
    // No way to report an error here: the spec says to end the session.
    if (!exp) return { kind: 'close', reason: `unknown export '${name}'` };
    const session = this.#session(exp);
    this.#send(exportNameReply(exp.device.size, session.flags, this.#noZeroes));
    return { kind: 'transmission', session };
  }

  #list(data: Buffer): HandshakeOutcome {
    if (data.length !== 0) return this.#reply(OPT_LIST, REP_ERR_INVALID, 'list option takes no data');
    for (const exp of this.#registry.list()) this.#send(serverReply(OPT_LIST, exp.name, exp.description));
    return this.#reply(OPT_LIST, REP_ACK);
  }

  #infoOrGo(option: number, data: Buffer): HandshakeOutcome {
    const request = parseInfoRequest(data);
    if (!request) return this.#reply(option, REP_ERR_INVALID, 'malformed info request');
    const exp = this.#registry.resolve(request.name);
    if (!exp) return this.#reply(option, REP_ERR_UNKNOWN, `unknown export '${request.name}'`);
    const session = this.#session(exp);
    this.#send(infoExportReply(option, exp.device.size, session.flags));
    // Sent unasked too (as qemu-nbd does): clients that do not understand it ignore it.
    this.#send(infoBlockSizeReply(option, exp.minBlockSize, exp.preferredBlockSize, exp.maxPayload));
    if (request.infos.includes(INFO_NAME)) this.#send(infoStringReply(option, INFO_NAME, exp.name));
    if (request.infos.includes(INFO_DESCRIPTION) && exp.description) {
      this.#send(infoStringReply(option, INFO_DESCRIPTION, exp.description));
    }
    this.#send(optionReply(option, REP_ACK));
    return option === OPT_GO ? { kind: 'transmission', session } : CONTINUE;
  }

  #metaContext(option: number, data: Buffer): HandshakeOutcome {
    const set = option === OPT_SET_META_CONTEXT;
    if (set) this.#meta = undefined;
    if (!this.#structured) return this.#reply(option, REP_ERR_INVALID, 'negotiate structured replies first');
    const request = parseMetaContextRequest(data);
    if (!request) return this.#reply(option, REP_ERR_INVALID, 'malformed meta context request');
    const exp = this.#registry.resolve(request.name);
    if (!exp) return this.#reply(option, REP_ERR_UNKNOWN, `unknown export '${request.name}'`);
    const contexts = matchContexts(exp.metaContexts, request.queries, set ? 'set' : 'list');
    for (const c of contexts) this.#send(metaContextReply(option, set ? c.id : 0, c.provider.name));
    if (set) this.#meta = { export: exp, contexts };
    return this.#reply(option, REP_ACK);
  }

  #session(exp: NbdExport): TransmissionSession {
    const contexts = this.#meta?.export === exp ? this.#meta.contexts : [];
    return { export: exp, structured: this.#structured, contexts, flags: exp.transmissionFlags(this.#structured) };
  }
}
