// Public surface of the NBD layer: the server and the types to describe exports and contexts.

export { NbdServer, type ListenAddress, type NbdServerOptions } from './server/nbd-server.js';
export { NbdExport, type NbdExportOptions } from './server/nbd-export.js';
export { baseAllocation, BASE_ALLOCATION, type MetaContextProvider, type MetaExtent } from './server/meta-context.js';
export { NbdError, type NbdErrorCode } from './errors.js';
export { nbdErrnoFor } from './protocol/errno.js';
