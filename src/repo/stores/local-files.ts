// Stores that keep each object as a file on this host. A restore's chunk workers then read pack
// ranges from those files themselves (a synchronous pread on the worker's own thread) instead of
// the main thread reading every span through libuv's pool and lending it over: each such read
// cost an open, a read and a close on the pool, every one waking a pool thread and then the main
// thread. On the bench image: 1.70-1.79 s per restore vs 1.83-1.94 s, 0.25 CPU-s less.
// Wrappers do not pass it on: what they add (counting, retries, limits) would be bypassed.

import type { Store } from '../store.js';

export interface LocalFiles {
  /** The file that holds object `key` (it may not exist). */
  localPath(key: string): string;
}

export function localFilesOf(store: Store): LocalFiles | undefined {
  return typeof (store as Partial<LocalFiles>).localPath === 'function' ? (store as Store & LocalFiles) : undefined;
}
