export { DnsServer } from "./server.js";
export { DEFAULT_DNS_LIMITS, DEFAULT_QUERY_TIMEOUT_MS } from "./limits.js";
export type {
  DnsQueryContext,
  DnsServerLimits,
  DnsServerOptions,
  ListenAddress,
  OverlayLookup,
  OverlayLookupResult,
} from "./types.js";
