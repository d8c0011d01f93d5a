// `fleece daemon --state DIR [--listen HOST:PORT]`: hosts the disks of DIR over NBD and serves
// the control API on DIR/api.sock until SIGINT/SIGTERM, then saves bitmaps clean and exits.

import type { Command } from 'commander';
import { lstat, unlink } from 'node:fs/promises';
import { UsageError } from '../../core/errors.js';

function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:(.*):)?(\d+)$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port > 65535) throw new UsageError(`invalid --listen '${text}': expected HOST:PORT or PORT`);
  return { host: (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1'), port };
}

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('host disks over NBD with dirty bitmaps and snapshots; control API on DIR/api.sock')
    .option('--state <dir>', 'state directory (default: $FLEECE_STATE)')
    .option('--listen <host:port>', 'also serve NBD on TCP')
    .action(async (opts: { state?: string; listen?: string }) => {
      const stateDir = opts.state ?? process.env.FLEECE_STATE;
      if (!stateDir) throw new UsageError('no state directory: pass --state DIR or set FLEECE_STATE');
      const tcp = opts.listen ? parseListen(opts.listen) : undefined;
      // Loaded here so that other verbs do not pay for fastify and the block graph at startup.
      const { Daemon } = await import('../../daemon/daemon.js');
      const { buildApi } = await import('../../api/api-server.js');
      const daemon = await Daemon.start({ stateDir, tcp, log: (line) => process.stderr.write(`${line}\n`) });
      const api = buildApi(daemon);
      try {
        if ((await lstat(daemon.state.apiSocket).catch(() => undefined))?.isSocket()) await unlink(daemon.state.apiSocket);
        // Owner-only from the moment it exists (requests may carry repository secrets).
        const umask = process.umask(0o077);
        try {
          await api.listen({ path: daemon.state.apiSocket });
        } finally {
          process.umask(umask);
        }
      } catch (err) {
        await daemon.stop();
        throw err;
      }
      const where = daemon.addresses.map((a) => ('path' in a ? a.path : `${a.host}:${a.port}`)).join(', ');
      process.stdout.write(`fleece daemon: ${daemon.listDisks().length} disk(s), NBD on ${where}, API on ${daemon.state.apiSocket}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await api.close();
      await daemon.stop();
    });
}
