// The native packages of the repository layer (BLAKE3, CRC32, zstd), loaded with require rather
// than import. They are CommonJS: importing one from an ES module makes Node scan its source for
// export names first (cjs-module-lexer), and the generated loaders of the napi-rs packages are
// large. Importing these three took ~40 ms per thread here (wall clock) against ~7 ms through require,
// paid by the main thread and by every chunk worker before its first chunk.

import { createRequire } from 'node:module';
import type * as BlakeHash from '@napi-rs/blake-hash';
import type * as Crc32 from '@node-rs/crc32';
import type * as Zstd from 'zstd-napi';
import type * as ZstdBinding from 'zstd-napi/binding.js';

const require = createRequire(import.meta.url);

export const { blake3, Blake3Hasher } = require('@napi-rs/blake-hash') as typeof BlakeHash;
export type Blake3Hasher = BlakeHash.Blake3Hasher;

export const { crc32 } = require('@node-rs/crc32') as typeof Crc32;

export const { Compressor, Decompressor } = require('zstd-napi') as typeof Zstd;
/** zstd-napi's direct binding: contexts whose calls write into a caller's buffer. */
export const zstdBinding = require('zstd-napi/binding.js') as typeof ZstdBinding;
