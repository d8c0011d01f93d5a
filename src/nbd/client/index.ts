// Public surface of the NBD client: connect to an export, send requests, parse URIs.

export { NbdClient, type NbdClientOptions, type StatusReply } from './nbd-client.js';
export type { ExportInfo } from './negotiate.js';
export { parseNbdUri, isNbdUri, DEFAULT_NBD_PORT, type NbdTarget } from './nbd-uri.js';
