// What the handshake hands to the transmission phase, and what both phases need from the
// connection that owns the socket (so neither touches the socket directly).

import type { NbdExport } from './nbd-export.js';
import type { SelectedContext } from './meta-context.js';

export interface TransmissionSession {
  readonly export: NbdExport;
  /** Structured replies were negotiated. */
  readonly structured: boolean;
  /** Metadata contexts selected for this export by the last SET_META_CONTEXT. */
  readonly contexts: readonly SelectedContext[];
  /** The transmission flags the client was sent. */
  readonly flags: number;
}

export interface ConnectionIo {
  /** Queues bytes for the peer (batched); `onWritten` runs once the socket is done with `buf`. */
  send(buf: Buffer, onWritten?: () => void): void;
  /** True while the socket's write buffer is over its limit: stop taking new requests. */
  readonly writeBlocked: boolean;
  /** Cancels device I/O when the connection goes away. */
  readonly signal: AbortSignal;
}

/** Finds exports by name for the handshake; '' may resolve to a default export. */
export interface ExportRegistry {
  /** The export a client asking for `name` gets, or undefined. */
  resolve(name: string): NbdExport | undefined;
  /** Every export, for NBD_OPT_LIST. */
  list(): readonly NbdExport[];
}
