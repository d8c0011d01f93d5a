#!/usr/bin/env node
// The `fleece` executable. It only sizes libuv's thread pool, then loads the CLI.
//
// Disk reads that miss the page cache wait in that pool, so its size is how many reads a server
// or the daemon keeps in flight: libuv's default is 4, qemu-nbd runs up to 64 threads, and fio
// measured 64 KiB random reads of a cold disk here faster at queue depth 16 than at 8. Node reads
// UV_THREADPOOL_SIZE once, when the pool first runs, and loading an ES module from disk already
// runs it: this entry is CommonJS so it can set the size before that. A size the user set is kept.

if (process.env.UV_THREADPOOL_SIZE === undefined) process.env.UV_THREADPOOL_SIZE = '16';
void import('./main.js');
