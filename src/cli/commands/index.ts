// Every CLI verb registers itself here; one line per command module.

import type { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerRepoCommands } from './repo.js';
import { registerDaemon } from './daemon.js';
import { registerDisk } from './disk.js';
import { registerBitmap } from './bitmap.js';
import { registerSnapshot } from './snapshot.js';
import { registerRbdDiff } from './rbd-diff.js';
import { registerServeBackup } from './serve-backup.js';

export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [registerServe, registerRepoCommands, registerDaemon, registerDisk, registerBitmap, registerSnapshot, registerRbdDiff, registerServeBackup];
