// Public surface of the rbd diff v1 jobs: the codec and the export/import jobs.

export { BANNER, DiffError, type DiffErrorCode, type DiffHeader } from './format.js';
export { encodeEnd, encodeHeader, encodeWriteHeader, encodeZero } from './encoder.js';
export { RbdDiffParser, type DiffEvent } from './parser.js';
export { exportDiff, type ExportDiffOptions, type ExportDiffReport } from './export-diff.js';
export { importDiff, type ImportDiffOptions, type ImportDiffReport } from './import-diff.js';
