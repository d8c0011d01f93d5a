// The CLI's side of the daemon API: JSON requests over the Unix socket DIR/api.sock. Error
// replies come back as FleeceErrors with the daemon's code, so exit codes stay meaningful.

import { request } from 'node:http';
import { join } from 'node:path';
import { FleeceError, UsageError } from '../core/errors.js';

export class ApiClient {
  readonly socketPath: string;

  constructor(stateDir: string) {
    this.socketPath = join(stateDir, 'api.sock');
  }

  /** Resolves the state directory from --state or FLEECE_STATE. */
  static fromState(state: string | undefined): ApiClient {
    const dir = state ?? process.env.FLEECE_STATE;
    if (!dir) throw new UsageError('no daemon state directory: pass --state DIR or set FLEECE_STATE');
    return new ApiClient(dir);
  }

  /** Sends a request; resolves with the JSON reply or throws the daemon's error. */
  call<T = Record<string, unknown>>(method: string, path: string, body?: unknown, options: { signal?: AbortSignal } = {}): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          path,
          method,
          signal: options.signal,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
            } catch (err) {
              return reject(new FleeceError('EPROTO', `daemon sent a reply that is not JSON (status ${res.statusCode})`, { cause: err }));
            }
            const error = (json as { error?: { code?: string; message?: string } }).error;
            if ((res.statusCode ?? 500) >= 400 || error) {
              return reject(new FleeceError(error?.code ?? 'EIO', error?.message ?? `daemon replied ${res.statusCode}`));
            }
            resolve(json as T);
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
          reject(new FleeceError('EDAEMON_UNREACHABLE', `no daemon is listening on '${this.socketPath}' (start one with 'fleece daemon --state DIR')`, { cause: err }));
        } else reject(err);
      });
      req.end(payload);
    });
  }
}
