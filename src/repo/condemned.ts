// The gc's list of condemned packs (`gc/condemned`): packs that were unreferenced when a gc
// ran while backups were live. Backups starting later never dedup against them, so the next gc
// may delete them once every live backup started after the list was written.

import { RepoError, isNotFound } from './errors.js';
import { isLive, readLeases } from './leases.js';
import type { Store } from './store.js';

export const CONDEMNED_KEY = 'gc/condemned';

export interface Condemned {
  /** pack id -> ms since the epoch when it was first condemned (taken before that write). */
  readonly packs: Readonly<Record<string, number>>;
}

export async function readCondemned(store: Store, options: { signal?: AbortSignal } = {}): Promise<Condemned | undefined> {
  try {
    return JSON.parse((await store.get(CONDEMNED_KEY, options)).toString('utf8')) as Condemned;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function writeCondemned(store: Store, condemned: Condemned, options: { signal?: AbortSignal } = {}): Promise<void> {
  if (Object.keys(condemned.packs).length === 0) await store.delete(CONDEMNED_KEY, options);
  else await store.put(CONDEMNED_KEY, Buffer.from(JSON.stringify(condemned)), options);
}

/** Waits while a live gc lease exists (a backup must not start its dedup lookups mid-gc). */
export async function waitForGc(store: Store, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 30 * 60_000);
  for (;;) {
    const now = Date.now();
    // Only gc leases are read: a busy repository's many backup leases cost no GETs here.
    const gcs = (await readLeases(store, { kind: 'gc', signal: options.signal })).filter((l) => isLive(l, now));
    if (gcs.length === 0) return;
    if (now > deadline) throw new RepoError('ELOCKED', `gc lease ${gcs[0]!.key} (pid ${gcs[0]!.pid}) is still live: try again later`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    options.signal?.throwIfAborted();
  }
}
