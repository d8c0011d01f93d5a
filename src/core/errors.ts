// The root of every error fleece raises on purpose. `code` is stable (scripts and the NBD,
// HTTP and CLI mappings switch on it); `message` is lower-case and quotes the bad value.

export class FleeceError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input from a user or a config: a value out of range, a malformed size, a missing file. */
export class UsageError extends FleeceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EUSAGE', message, options);
  }
}

/** Thrown when an AbortSignal fires; `code` lets callers tell cancellation from failure. */
export class AbortedError extends FleeceError {
  constructor(message = 'operation aborted', options?: { cause?: unknown }) {
    super('EABORTED', message, options);
  }
}

/** Throws AbortedError if the signal has fired. Call at the top of every cancellable step. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError('operation aborted', { cause: signal.reason });
}

/** A message for a user from anything thrown: ours verbatim, others with their code if any. */
export function describeError(err: unknown): string {
  if (err instanceof FleeceError) return err.message;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
