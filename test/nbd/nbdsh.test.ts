// libnbd's Python bindings (nbdsh) drive the corners other clients hide: the order of
// structured read chunks, DF, clients without structured replies, NBD_OPT_EXPORT_NAME with and
// without zero padding, meta-context queries, REQ_ONE, and the errno of refused requests.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MemoryDevice } from '../../src/block/drivers/memory-device.js';
import type { MetaContextProvider } from '../../src/nbd/index.js';
import { NBDSH, requireTools, runOk } from '../helpers/tools.js';
import { patternBytes, startTestServer, type TestServer } from './helpers.js';

const KiB = 1024;
let srv: TestServer;
const disk = new MemoryDevice(1024 * KiB);
const data = patternBytes(64 * KiB, 3);

/** A fake dirty bitmap: everything dirty (flag 1) in the first 64 KiB, clean after. */
function bitmap(name: string): MetaContextProvider {
  return {
    name: `qemu:dirty-bitmap:${name}`,
    async blockStatus(offset, length) {
      if (offset >= 64 * KiB) return [{ length, flags: 0 }];
      const dirty = Math.min(64 * KiB - offset, length);
      return dirty < length ? [{ length: dirty, flags: 1 }, { length: length - dirty, flags: 0 }] : [{ length, flags: 1 }];
    },
  };
}

before(async () => {
  requireTools('/usr/bin/python3');
  // [0, 64K) hole, [64K, 128K) data, rest hole.
  await disk.write(64 * KiB, data);
  srv = await startTestServer([
    { name: 'disk', device: disk, metaContexts: [bitmap('daily'), bitmap('weekly')] },
    { name: 'ro', device: new MemoryDevice(64 * KiB), readOnly: true },
  ]);
});
after(() => srv.stop());

/** Runs a Python snippet in nbdsh (handle `h`), returning what it printed as JSON. */
async function nbdsh(script: string): Promise<unknown> {
  const out = await runOk(NBDSH[0]!, [...NBDSH.slice(1), '-c', `import json\nURI = ${JSON.stringify(srv.uri('disk'))}\nRO = ${JSON.stringify(srv.uri('ro'))}\n${script}`]);
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('a structured read over a hole then data yields OFFSET_HOLE then OFFSET_DATA; DF gives one chunk', async () => {
  const result = (await nbdsh(`
chunks = []
def cb(buf, offset, status, err):
    chunks.append([offset, len(buf), status, buf.hex() if status == nbd.READ_DATA else None])
    return 0
h.connect_uri(URI)
buf = h.pread_structured(128 * 1024, 0, cb)
plain = chunks; chunks = []
h.pread_structured(128 * 1024, 0, cb, nbd.CMD_FLAG_DF)
print(json.dumps({"plain": plain, "df": chunks, "structured": h.get_structured_replies_negotiated(), "all": buf.hex()}))
`)) as { plain: [number, number, number, string | null][]; df: [number, number, number, string | null][]; structured: boolean; all: string };
  assert.equal(result.structured, true);
  assert.deepEqual(
    result.plain.map(([o, l, s]) => [o, l, s]),
    [
      [0, 64 * KiB, 2],
      [64 * KiB, 64 * KiB, 1],
    ],
  );
  assert.equal(result.plain[1]![3], data.toString('hex'));
  assert.equal(result.df.length, 1);
  assert.deepEqual(result.df[0]!.slice(0, 3), [0, 128 * KiB, 1]);
  assert.equal(result.df[0]![3], Buffer.concat([Buffer.alloc(64 * KiB), data]).toString('hex'));
  assert.equal(result.all, result.df[0]![3]);
});

test('a client without structured replies reads and writes with simple replies', async () => {
  const result = (await nbdsh(`
h.set_request_structured_replies(False)
h.connect_uri(URI)
h.pwrite(b"\\x5a" * 4096, 512 * 1024)
print(json.dumps({"structured": h.get_structured_replies_negotiated(), "df": h.can_df(), "read": h.pread(8192, 512 * 1024 - 4096).hex()}))
`)) as { structured: boolean; df: boolean; read: string };
  assert.equal(result.structured, false);
  assert.equal(result.df, false, 'DF is only announced with structured replies');
  assert.equal(result.read, Buffer.concat([Buffer.alloc(4096), Buffer.alloc(4096, 0x5a)]).toString('hex'));
});

test('NBD_OPT_EXPORT_NAME works with and without the 124 zero bytes', async () => {
  for (const flags of ['0', 'nbd.HANDSHAKE_FLAG_NO_ZEROES']) {
    const result = (await nbdsh(`
h.set_handshake_flags(${flags})
h.connect_uri(URI)
print(json.dumps({"proto": h.get_protocol(), "size": h.get_size(), "read": h.pread(16, 64 * 1024).hex()}))
`)) as { proto: string; size: number; read: string };
    assert.equal(result.proto, 'newstyle', `flags ${flags}`);
    assert.equal(result.size, 1024 * KiB);
    assert.equal(result.read, data.subarray(0, 16).toString('hex'));
  }
});

test('meta contexts: listing all, a namespace, a prefix; selecting some; REQ_ONE', async () => {
  const result = (await nbdsh(`
def listed(*queries):
    names = []
    h.clear_meta_contexts()
    for q in queries: h.add_meta_context(q)
    h.opt_list_meta_context(lambda name: names.append(name) or 0)
    return sorted(names)
h.set_opt_mode(True)
h.connect_uri(URI)
out = {"all": listed(), "base": listed("base:"), "bitmaps": listed("qemu:dirty-bitmap:"), "unknown": listed("x-nope:thing"), "one": listed("qemu:dirty-bitmap:weekly")}
h.clear_meta_contexts()
h.add_meta_context("base:allocation")
h.add_meta_context("qemu:dirty-bitmap:daily")
h.opt_go()
status = {}
def cb(ctx, offset, entries, err):
    status[ctx] = entries
    return 0
h.block_status(128 * 1024, 0, cb)
out["status"] = dict(status)
status.clear()
h.block_status(128 * 1024, 0, cb, nbd.CMD_FLAG_REQ_ONE)
out["one_extent"] = dict(status)
print(json.dumps(out))
`)) as Record<string, unknown>;
  const bitmaps = ['qemu:dirty-bitmap:daily', 'qemu:dirty-bitmap:weekly'];
  assert.deepEqual(result['all'], ['base:allocation', ...bitmaps]);
  assert.deepEqual(result['base'], ['base:allocation']);
  assert.deepEqual(result['bitmaps'], bitmaps);
  assert.deepEqual(result['unknown'], []);
  assert.deepEqual(result['one'], ['qemu:dirty-bitmap:weekly']);
  assert.deepEqual(result['status'], {
    'base:allocation': [64 * KiB, 3, 64 * KiB, 0],
    'qemu:dirty-bitmap:daily': [64 * KiB, 1, 64 * KiB, 0],
  });
  assert.deepEqual(result['one_extent'], {
    'base:allocation': [64 * KiB, 3],
    'qemu:dirty-bitmap:daily': [64 * KiB, 1],
  });
});

test('refused requests carry the errno the spec asks for', async () => {
  const result = (await nbdsh(`
h.set_strict_mode(0)
h.connect_uri(URI)
size = h.get_size()
def errno_of(fn):
    try:
        fn()
        return 0
    except nbd.Error as e:
        return e.errno
out = {
  "read_past_end": errno_of(lambda: h.pread(4096, size - 1024)),
  "write_past_end": errno_of(lambda: h.pwrite(b"x" * 4096, size - 1024)),
  "zero_past_end": errno_of(lambda: h.zero(4096, size)),
  "trim_past_end": errno_of(lambda: h.trim(4096, size)),
  "bad_flag": errno_of(lambda: h.pread(4096, 0, nbd.CMD_FLAG_REQ_ONE)),
  "still_works": h.pread(16, 64 * 1024).hex(),
}
ro = nbd.NBD()
ro.set_strict_mode(0)
ro.connect_uri(RO)
out["write_read_only"] = errno_of(lambda: ro.pwrite(b"x" * 512, 0))
out["trim_read_only"] = errno_of(lambda: ro.trim(512, 0))
print(json.dumps(out))
`)) as Record<string, unknown>;
  assert.deepEqual(result, {
    read_past_end: 'EINVAL',
    write_past_end: 'ENOSPC',
    zero_past_end: 'ENOSPC',
    trim_past_end: 'EINVAL',
    bad_flag: 'EINVAL',
    still_works: data.subarray(0, 16).toString('hex'),
    write_read_only: 'EPERM',
    trim_read_only: 'EPERM',
  });
});
