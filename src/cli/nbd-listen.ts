// What every verb that serves NBD shares (serve, serve-backup): the --listen/--socket options,
// binding the server to them, printing the URIs clients connect to, and waiting for a signal.

import type { Command } from 'commander';
import { UsageError } from '../core/errors.js';
import type { ListenAddress, NbdServer } from '../nbd/index.js';

export const DEFAULT_LISTEN = '127.0.0.1:10809';

export interface ListenFlags {
  readonly listen?: string;
  readonly socket?: string;
}

/** Adds --listen and --socket to a command. */
export function addListenOptions(command: Command): Command {
  return command
    .option('--listen <host:port>', `TCP address to listen on (default ${DEFAULT_LISTEN})`)
    .option('--socket <path>', 'Unix socket to listen on instead of TCP');
}

/** Listens where the flags say (TCP by default) and prints one URI per listener for `name`. */
export async function listenAndPrint(server: NbdServer, flags: ListenFlags, name: string): Promise<ListenAddress[]> {
  const addresses: ListenAddress[] = [];
  if (flags.socket) addresses.push(await server.listen({ path: flags.socket }));
  if (flags.listen || !flags.socket) addresses.push(await server.listen(parseListen(flags.listen ?? DEFAULT_LISTEN)));
  for (const address of addresses) process.stdout.write(`${uriFor(address, name)}\n`);
  return addresses;
}

/** "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT". */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$|^(\d+)$/.exec(text);
  const port = Number(match?.[3] ?? match?.[4]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`invalid listen address '${text}': expected HOST:PORT, e.g. ${DEFAULT_LISTEN}`);
  }
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}

export function uriFor(address: ListenAddress, name: string): string {
  const exportPath = encodeURIComponent(name);
  if ('path' in address) return `nbd+unix:///${exportPath}?socket=${address.path}`;
  const host = address.host?.includes(':') ? `[${address.host}]` : address.host;
  return `nbd://${host}:${address.port}/${exportPath}`;
}

/** Resolves on the first SIGINT or SIGTERM. */
export function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}
