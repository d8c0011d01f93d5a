// Errors of the NBD layer: a peer that breaks the protocol (bad magic, impossible lengths) gets
// its connection closed; nothing here is ever fatal to the server process.

import { FleeceError } from '../core/errors.js';

export type NbdErrorCode =
  | 'ENBDPROTO' // the peer sent bytes that are not NBD (wrong magic, impossible length)
  | 'ENBDEXPORT' // an export name is unknown, duplicated or invalid
  | 'ENBDLISTEN'; // a listener could not be opened (address in use, bad path)

export class NbdError extends FleeceError {
  declare readonly code: NbdErrorCode;

  constructor(code: NbdErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
