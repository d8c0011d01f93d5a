// Page-aligned views of fresh memory for large I/O buffers. V8 takes large ArrayBuffers from
// malloc, which starts them 16 bytes into a page (its chunk header). On the AMD EPYC machines
// fleece was measured on, the kernel's copy into a destination 1-31 bytes into a page runs about
// five times slower than into one at a page boundary: reading 2 GiB from the page cache in 4 MiB
// preads took 1.0 s instead of 0.17 s, a tenth of a full backup's CPU time. Copies out of such a
// buffer (write, pwrite) are not affected.

import { loadNative } from './native.js';

const PAGE = 4096;

/** `length` bytes of new memory (shared between threads when `shared`) starting at a page boundary. */
export function pageAlignedBuffer(length: number, shared: boolean): Buffer {
  const memory = shared ? new SharedArrayBuffer(length + PAGE) : new ArrayBuffer(length + PAGE);
  const skew = pageOffsetOf(memory);
  return Buffer.from(memory, skew === 0 ? 0 : PAGE - skew, length);
}

function pageOffsetOf(memory: ArrayBufferLike): number {
  try {
    return loadNative().pageOffset(new Uint8Array(memory, 0, 1)) % PAGE;
  } catch {
    return 0; // without the addon: unaligned, which is only slower
  }
}
