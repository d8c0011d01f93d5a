// Leases: small objects under `leases/` that say "a backup (or a gc) is running". A backup's
// lease protects what it may reference before its manifest exists; gc's lease excludes other
// gcs and makes new backups wait. Refreshed every ttl/3; a lease older than ttl is dead.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { RepoError, isNotFound } from './errors.js';
import type { Store } from './store.js';

export type LeaseKind = 'backup' | 'gc';

export interface LeaseRecord {
  readonly key: string;
  readonly kind: LeaseKind;
  readonly host: string;
  readonly pid: number;
  /** ms since the epoch, taken before the lease was first written. */
  readonly startedAt: number;
  readonly refreshedAt: number;
}

export const LEASE_PREFIX = 'leases/';

/** Lease lifetime; FLEECE_LEASE_TTL_MS overrides the 5-minute default (tests use seconds). */
export function leaseTtlMs(): number {
  const fromEnv = Number(process.env.FLEECE_LEASE_TTL_MS);
  return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : 5 * 60_000;
}

export function isLive(lease: LeaseRecord, now = Date.now(), ttlMs = leaseTtlMs()): boolean {
  return now - lease.refreshedAt < ttlMs;
}

/** Every lease in the store, or only those of `kind` (its keys start `leases/KIND-`: one list, one GET each). */
export async function readLeases(store: Store, options: { kind?: LeaseKind; signal?: AbortSignal } = {}): Promise<LeaseRecord[]> {
  const leases: LeaseRecord[] = [];
  const prefix = options.kind === undefined ? LEASE_PREFIX : `${LEASE_PREFIX}${options.kind}-`;
  for await (const { key } of store.list(prefix, { signal: options.signal })) {
    try {
      const record = JSON.parse((await store.get(key, { signal: options.signal })).toString('utf8')) as Omit<LeaseRecord, 'key'>;
      if (options.kind === undefined || record.kind === options.kind) leases.push({ ...record, key });
    } catch (err) {
      if (isNotFound(err)) continue; // released between list and get
      if (err instanceof SyntaxError) continue; // torn write of a dead process: local puts are atomic, so never live
      throw err;
    }
  }
  return leases;
}

export class Lease {
  readonly key: string;
  readonly kind: LeaseKind;
  readonly startedAt: number;
  readonly #store: Store;
  readonly #ttlMs: number;
  #refreshedAt: number;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  // Longest time the stored lease went without a refresh; a gc may have seen it dead if > ttl.
  #worstGapMs = 0;

  private constructor(store: Store, kind: LeaseKind, ttlMs: number) {
    this.#store = store;
    this.kind = kind;
    this.#ttlMs = ttlMs;
    this.startedAt = Date.now();
    this.#refreshedAt = this.startedAt;
    this.key = `${LEASE_PREFIX}${kind}-${this.startedAt.toString(36)}-${randomBytes(6).toString('hex')}`;
  }

  /** Writes a new lease and starts refreshing it in the background. */
  static async acquire(store: Store, kind: LeaseKind, options: { ttlMs?: number; signal?: AbortSignal } = {}): Promise<Lease> {
    const lease = new Lease(store, kind, options.ttlMs ?? leaseTtlMs());
    await lease.#write(lease.startedAt, options.signal);
    lease.#timer = setInterval(() => {
      lease.#refreshing ??= lease.#write(Date.now()).catch(() => undefined).finally(() => (lease.#refreshing = undefined));
    }, Math.max(50, lease.#ttlMs / 3));
    lease.#timer.unref();
    return lease;
  }

  async #write(now: number, signal?: AbortSignal): Promise<void> {
    const record = { kind: this.kind, host: hostname(), pid: process.pid, startedAt: this.startedAt, refreshedAt: now };
    await this.#store.put(this.key, Buffer.from(JSON.stringify(record)), { signal });
    // The stored record said `#refreshedAt` until this put landed: that whole span counts.
    this.#worstGapMs = Math.max(this.#worstGapMs, Date.now() - this.#refreshedAt);
    this.#refreshedAt = now;
  }

  /** Throws ELEASE when the lease may have looked dead to a gc (not refreshed within ttl). */
  assertHeld(): void {
    const age = Math.max(this.#worstGapMs, Date.now() - this.#refreshedAt);
    if (age > this.#ttlMs * 0.8) {
      throw new RepoError('ELEASE', `lease ${this.key} went ${age} ms without a refresh (ttl ${this.#ttlMs} ms): refusing to commit`);
    }
  }

  /** Stops refreshing and deletes the lease; idempotent. */
  async release(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#refreshing;
    await this.#store.delete(this.key);
  }
}
