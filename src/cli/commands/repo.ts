// Registers every repository verb (init, backup, list, show, restore, delete, prune, gc,
// compact, verify, stats, repo check/rebuild-catalog) with one entry in commands/index.ts.

import type { Command } from 'commander';
import { registerBackup } from './repo-backup.js';
import { registerCompact } from './repo-compact.js';
import { registerDelete } from './repo-delete.js';
import { registerGc } from './repo-gc.js';
import { registerInit } from './repo-init.js';
import { registerList } from './repo-list.js';
import { registerRepoMaintenance } from './repo-maintenance.js';
import { registerRestore } from './repo-restore.js';
import { registerStats } from './repo-stats.js';
import { registerVerify } from './repo-verify.js';

export function registerRepoCommands(program: Command): void {
  for (const register of [registerInit, registerBackup, registerList, registerRestore, registerDelete, registerGc, registerCompact, registerVerify, registerStats, registerRepoMaintenance]) {
    register(program);
  }
}
