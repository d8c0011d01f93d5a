// Retention policy (restic's semantics): per disk, newest first, keep the newest backup of each
// of the last N hours/days/weeks/months/years that have one, plus the last N backups. A plan
// lists every backup with keep/remove and the reasons; execute deletes manifests only.

import type { Manifest } from './manifest.js';

export interface KeepPolicy {
  readonly last?: number;
  readonly hourly?: number;
  readonly daily?: number;
  readonly weekly?: number;
  readonly monthly?: number;
  readonly yearly?: number;
}

export interface PruneDecision {
  readonly backup: Manifest;
  readonly keep: boolean;
  readonly reasons: readonly string[];
}

const BUCKETS: { readonly rule: keyof KeepPolicy; readonly key: (d: Date) => string }[] = [
  { rule: 'last', key: () => '' },
  { rule: 'hourly', key: (d) => d.toISOString().slice(0, 13) },
  { rule: 'daily', key: (d) => d.toISOString().slice(0, 10) },
  { rule: 'weekly', key: (d) => isoWeek(d) },
  { rule: 'monthly', key: (d) => d.toISOString().slice(0, 7) },
  { rule: 'yearly', key: (d) => d.toISOString().slice(0, 4) },
];

export function isEmptyPolicy(policy: KeepPolicy): boolean {
  return BUCKETS.every(({ rule }) => !policy[rule]);
}

/** Decides keep/remove for every backup; an empty policy keeps everything. */
export function planPrune(backups: readonly Manifest[], policy: KeepPolicy): PruneDecision[] {
  if (isEmptyPolicy(policy)) return backups.map((backup) => ({ backup, keep: true, reasons: ['no policy'] }));
  const byDisk = new Map<string, Manifest[]>();
  for (const b of backups) byDisk.set(b.disk, [...(byDisk.get(b.disk) ?? []), b]);
  const decisions: PruneDecision[] = [];
  for (const list of byDisk.values()) {
    const newestFirst = [...list].sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : a.id < b.id ? 1 : -1));
    const reasons = new Map<string, string[]>(newestFirst.map((b) => [b.id, []]));
    for (const { rule, key } of BUCKETS) {
      const want = policy[rule] ?? 0;
      const seen = new Set<string>();
      for (const b of newestFirst) {
        if (seen.size >= want) break;
        const bucket = rule === 'last' ? b.id : key(new Date(b.time));
        if (seen.has(bucket)) continue;
        seen.add(bucket);
        reasons.get(b.id)!.push(rule === 'last' ? 'last' : `${rule} ${bucket}`);
      }
    }
    for (const b of newestFirst) decisions.push({ backup: b, keep: reasons.get(b.id)!.length > 0, reasons: reasons.get(b.id)! });
  }
  return decisions;
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}
