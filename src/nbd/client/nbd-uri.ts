// Parses the NBD URI forms fleece prints and accepts (the NBD URI spec, doc/uri.md):
// nbd://HOST[:PORT]/EXPORT and nbd+unix:///EXPORT?socket=PATH.

import { UsageError } from '../../core/errors.js';

export type NbdTarget =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly exportName: string }
  | { readonly kind: 'unix'; readonly path: string; readonly exportName: string };

export const DEFAULT_NBD_PORT = 10809;

/** True when `text` looks like an NBD URI (so callers can tell it from a file path). */
export function isNbdUri(text: string): boolean {
  return /^nbd(\+unix)?:\/\//.test(text);
}

/** Splits an NBD URI into where to connect and which export to ask for. */
export function parseNbdUri(text: string): NbdTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new UsageError(`invalid nbd uri '${text}'`, { cause: err });
  }
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (url.protocol === 'nbd+unix:') {
    const path = url.searchParams.get('socket');
    if (!path) throw new UsageError(`nbd uri '${text}' has no ?socket=PATH`);
    if (url.host !== '') throw new UsageError(`nbd+unix uri '${text}' must not name a host`);
    return { kind: 'unix', path, exportName };
  }
  if (url.protocol === 'nbd:') {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!host) throw new UsageError(`nbd uri '${text}' has no host`);
    const port = url.port === '' ? DEFAULT_NBD_PORT : Number(url.port);
    return { kind: 'tcp', host, port, exportName };
  }
  throw new UsageError(`unsupported nbd uri scheme '${url.protocol}' in '${text}': expected nbd:// or nbd+unix://`);
}
