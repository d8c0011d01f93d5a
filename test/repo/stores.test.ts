// Runs the store conformance suite against the memory and local-directory stores.

import { MemoryStore } from '../../src/repo/stores/memory-store.js';
import { LocalStore } from '../../src/repo/stores/local-store.js';
import { scratchDir } from '../helpers/tools.js';
import { runStoreConformance } from './store-conformance.js';

runStoreConformance('memory', async () => ({ store: new MemoryStore(), cleanup: async () => undefined }));

runStoreConformance('local', async () => {
  const dir = await scratchDir('fleece-store-');
  return { store: new LocalStore(dir.path), cleanup: dir.cleanup };
});
