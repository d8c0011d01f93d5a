// Public surface of the repository layer (what jobs, api and cli import).

export type { Store, StoreEntry, StoreStat, PutOptions, GetOptions } from './store.js';
export { LocalStore } from './stores/local-store.js';
export { MemoryStore } from './stores/memory-store.js';
export { RepoError, isNotFound, type RepoErrorCode } from './errors.js';
export { Repository, type InitOptions, type OpenOptions } from './repository.js';
export type { RepoConfig } from './config.js';
export type { Secret } from './keys.js';
export type { Manifest, BackupCounts } from './manifest.js';
export { FileSource, type BackupSource } from './backup-source.js';
export { runBackup, type BackupOptions, type BackupProgress } from './backup-engine.js';
export { runRestore, type RestoreOptions, type RestoreProgress } from './restore-engine.js';
export { BackupReader } from './backup-reader.js';
export { runGc, type GcReport } from './gc.js';
export { runVerify, type VerifyReport, type BackupVerdict } from './verify.js';
export { runCheck, type CheckReport } from './check.js';
export { planPrune, isEmptyPolicy, type KeepPolicy, type PruneDecision } from './prune-policy.js';
export { collectStats, type RepoStats } from './stats.js';
