// Metadata contexts an export offers to NBD_CMD_BLOCK_STATUS: a provider per context name, the
// built-in `base:allocation` derived from the device, and the query matching of
// NBD_OPT_LIST/SET_META_CONTEXT. Later features add providers (e.g. `qemu:dirty-bitmap:NAME`).

import type { BlockDevice, IoOptions } from '../../block/block-device.js';
import { STATE_HOLE, STATE_ZERO } from '../protocol/constants.js';

/** One run of bytes with the same status flags; the meaning of the flags belongs to the context. */
export interface MetaExtent {
  readonly length: number;
  readonly flags: number;
}

export interface MetaContextProvider {
  /** Full context name, namespace included, e.g. 'base:allocation' or 'qemu:dirty-bitmap:daily'. */
  readonly name: string;
  /** Consecutive extents from `offset`, at least one, each non-empty; may stop before offset+length. */
  blockStatus(offset: number, length: number, options?: IoOptions): Promise<MetaExtent[]>;
}

export const BASE_ALLOCATION = 'base:allocation';

/** `base:allocation` of a device: HOLE for unallocated ranges, ZERO for ranges that read as zero. */
export function baseAllocation(device: BlockDevice): MetaContextProvider {
  return {
    name: BASE_ALLOCATION,
    async blockStatus(offset, length, options) {
      if (!device.capabilities.canBlockStatus) return [{ length, flags: 0 }];
      const extents = await device.blockStatus(offset, length, options);
      const out: MetaExtent[] = [];
      for (const e of extents) {
        const flags = (e.hole ? STATE_HOLE : 0) | (e.zero ? STATE_ZERO : 0);
        const last = out[out.length - 1];
        if (last && last.flags === flags) out[out.length - 1] = { length: last.length + e.length, flags };
        else if (e.length > 0) out.push({ length: e.length, flags });
      }
      return out.length > 0 ? out : [{ length, flags: 0 }];
    },
  };
}

/** A context selected by a client, with the id that tags its BLOCK_STATUS chunks. */
export interface SelectedContext {
  readonly id: number;
  readonly provider: MetaContextProvider;
}

/**
 * Contexts matching client queries. LIST: no queries means all; a query ending in ':' (a bare
 * namespace like 'base:' or a prefix like 'qemu:dirty-bitmap:') lists every context under it.
 * SET: only exact names select; wildcards are ignored, as the spec asks.
 */
export function matchContexts(
  providers: readonly MetaContextProvider[],
  queries: readonly string[],
  mode: 'list' | 'set',
): SelectedContext[] {
  const selected: SelectedContext[] = [];
  providers.forEach((provider, index) => {
    const hit =
      (mode === 'list' && queries.length === 0) ||
      queries.some((q) => q === provider.name || (mode === 'list' && q.endsWith(':') && provider.name.startsWith(q)));
    if (hit) selected.push({ id: index + 1, provider });
  });
  return selected;
}
