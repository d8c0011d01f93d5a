// The daemon's control API: HTTP + JSON on a Unix socket (DIR/api.sock), one route per CLI
// verb. Handlers only translate between JSON and Daemon calls; errors become {error:{code,message}}.

import { chmodSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { describeError, FleeceError, UsageError } from '../core/errors.js';
import { parseSize } from '../core/size.js';
import type { Daemon } from '../daemon/daemon.js';
import { parseLiveRestoreRequest } from '../daemon/live-restore-record.js';
import { httpStatusFor } from './http-status.js';

type Body = Record<string, unknown> | undefined;
type Params = Record<string, string>;

function str(body: Body, key: string): string | undefined {
  const v = body?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new UsageError(`field '${key}' must be a string, got ${JSON.stringify(v)}`);
  return v;
}

/** A size given as a number of bytes or a string like "256M". */
function size(body: Body, key: string): number | undefined {
  const v = body?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string') return parseSize(v, key);
  throw new UsageError(`field '${key}' must be a size, got ${JSON.stringify(v)}`);
}

export function buildApi(daemon: Daemon): FastifyInstance {
  const app = Fastify({ logger: false });
  app.setErrorHandler((err, _request, reply) => {
    const code = err instanceof FleeceError ? err.code : (err as { statusCode?: number }).statusCode === 400 ? 'EUSAGE' : 'EINTERNAL';
    const status = code === 'EUSAGE' ? 400 : httpStatusFor(err);
    void reply.status(status).send({ error: { code, message: describeError(err) } });
  });

  app.get('/disks', async () => ({ disks: daemon.listDisks() }));
  app.post('/disks', async (req) => {
    const body = req.body as Body;
    const name = str(body, 'name');
    if (!name) throw new UsageError("field 'name' is required");
    return daemon.createDisk(name, { size: size(body, 'size'), from: str(body, 'from') });
  });
  app.delete('/disks/:disk', async (req) => {
    await daemon.removeDisk((req.params as Params).disk!);
    return { removed: (req.params as Params).disk };
  });

  app.get('/disks/:disk/bitmaps', async (req) => {
    const disk = daemon.disk((req.params as Params).disk!);
    return { bitmaps: daemon.listDisks().find((d) => d.name === disk.name)!.bitmaps };
  });
  app.post('/disks/:disk/bitmaps', async (req) => {
    const body = req.body as Body;
    const name = str(body, 'name');
    if (!name) throw new UsageError("field 'name' is required");
    const b = await daemon.disk((req.params as Params).disk!).addBitmap(name, {
      granularity: size(body, 'granularity'),
      enabled: body?.disabled !== true,
    });
    return { name: b.name, granularity: b.granularity, enabled: b.enabled };
  });
  app.delete('/disks/:disk/bitmaps/:bitmap', async (req) => {
    const p = req.params as Params;
    await daemon.disk(p.disk!).removeBitmap(p.bitmap!);
    return { removed: p.bitmap };
  });
  app.post('/disks/:disk/bitmaps/:bitmap/:action', async (req) => {
    const p = req.params as Params;
    const disk = daemon.disk(p.disk!);
    const action = p.action!;
    const b =
      action === 'merge'
        ? disk.mergeBitmaps(p.bitmap!, ((req.body as Body)?.from as string[] | undefined) ?? [])
        : action === 'clear' || action === 'enable' || action === 'disable'
          ? disk.changeBitmap(p.bitmap!, action)
          : undefined;
    if (!b) throw new UsageError(`unknown bitmap action '${action}': expected clear, enable, disable or merge`);
    return { name: b.name, enabled: b.enabled, dirtyBytes: b.dirtyBytes };
  });

  app.get('/snapshots', async () => ({ snapshots: daemon.listSnapshots() }));
  app.post('/disks/:disk/snapshots', async (req) => {
    const body = req.body as Body;
    const onFull = str(body, 'onFull');
    if (onFull !== undefined && onFull !== 'break-snapshot' && onFull !== 'wait') {
      throw new UsageError(`invalid onFull '${onFull}': expected break-snapshot or wait`);
    }
    return daemon.createSnapshot((req.params as Params).disk!, {
      name: str(body, 'name'),
      bitmap: str(body, 'bitmap'),
      ramBytes: size(body, 'ramCache'),
      spillDir: str(body, 'spillDir'),
      spillMaxBytes: size(body, 'spillMax'),
      onFull,
      readOnce: body?.readOnce === true,
    });
  });
  app.post('/disks/:disk/snapshots/:snapshot/release', async (req) => {
    const p = req.params as Params;
    const body = req.body as Body;
    return daemon.releaseSnapshot(p.disk!, p.snapshot!, { keepBitmap: str(body, 'keepBitmap'), granularity: size(body, 'keepGranularity') });
  });
  app.post('/disks/:disk/snapshots/:snapshot/drop', async (req) => {
    const p = req.params as Params;
    const body = req.body as Body;
    const live = daemon.disk(p.disk!).snapshot(p.snapshot!);
    await live.access.drop(size(body, 'offset') ?? 0, size(body, 'length') ?? live.access.size);
    return live.access.snapshot.stats;
  });

  // Live restore: the body carries the repository location and its secret (keyFile path or
  // passphrase), which is why the API socket is owner-only (see the chmod below).
  app.post('/restores', async (req) => daemon.liveRestore(parseLiveRestoreRequest(req.body)));

  app.get('/stats', async () => daemon.stats());
  // Requests may carry repository secrets (POST /restores): only the socket's owner may connect.
  app.server.once('listening', () => {
    const address = app.server.address();
    if (typeof address === 'string') chmodSync(address, 0o600);
  });
  return app;
}
