// fsync of a directory: a file created, renamed or unlinked in it is durable only once the
// directory's own entry changes are, which fsync of the file alone does not promise.

import { open } from 'node:fs/promises';

export async function syncDir(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
