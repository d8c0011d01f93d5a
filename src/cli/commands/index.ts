// Every CLI verb registers itself here; one line per command module.

import type { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerRepoCommands } from './repo.js';

export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [registerServe, registerRepoCommands];
