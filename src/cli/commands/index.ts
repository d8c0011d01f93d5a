// Every CLI verb's module, with the top-level verbs it registers. A command line that names one
// of them loads only that module (and what it imports): loading all of them costs ~15 ms more
// before any work starts, for every command.

import type { Command } from 'commander';

export type RegisterCommand = (program: Command) => void;

interface CommandModule {
  readonly verbs: readonly string[];
  readonly load: () => Promise<RegisterCommand>;
}

/** In the order `fleece --help` lists them. */
const MODULES: readonly CommandModule[] = [
  { verbs: ['serve'], load: async () => (await import('./serve.js')).registerServe },
  { verbs: ['init'], load: async () => (await import('./repo-init.js')).registerInit },
  { verbs: ['backup'], load: async () => (await import('./repo-backup.js')).registerBackup },
  { verbs: ['list', 'show'], load: async () => (await import('./repo-list.js')).registerList },
  { verbs: ['restore'], load: async () => (await import('./repo-restore.js')).registerRestore },
  { verbs: ['delete', 'prune'], load: async () => (await import('./repo-delete.js')).registerDelete },
  { verbs: ['gc'], load: async () => (await import('./repo-gc.js')).registerGc },
  { verbs: ['compact'], load: async () => (await import('./repo-compact.js')).registerCompact },
  { verbs: ['verify'], load: async () => (await import('./repo-verify.js')).registerVerify },
  { verbs: ['stats'], load: async () => (await import('./repo-stats.js')).registerStats },
  { verbs: ['repo'], load: async () => (await import('./repo-maintenance.js')).registerRepoMaintenance },
  { verbs: ['daemon'], load: async () => (await import('./daemon.js')).registerDaemon },
  { verbs: ['disk'], load: async () => (await import('./disk.js')).registerDisk },
  { verbs: ['bitmap'], load: async () => (await import('./bitmap.js')).registerBitmap },
  { verbs: ['snapshot'], load: async () => (await import('./snapshot.js')).registerSnapshot },
  { verbs: ['export-diff', 'import-diff'], load: async () => (await import('./rbd-diff.js')).registerRbdDiff },
  { verbs: ['serve-backup'], load: async () => (await import('./serve-backup.js')).registerServeBackup },
];

/**
 * The register functions for a command line (arguments after the script): the one module whose
 * verb comes first, or every module when there is no verb or an unknown one (help, --version,
 * a typo commander suggests a verb for).
 */
export async function loadCommands(args: readonly string[]): Promise<RegisterCommand[]> {
  const verb = args.find((arg) => !arg.startsWith('-'));
  const named = MODULES.find((m) => verb !== undefined && m.verbs.includes(verb));
  return Promise.all((named ? [named] : MODULES).map((m) => m.load()));
}

/** Every top-level verb (for tests that check the table against what the modules register). */
export const ALL_VERBS: readonly string[] = MODULES.flatMap((m) => m.verbs);
