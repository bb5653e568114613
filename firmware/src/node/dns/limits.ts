import type { DnsServerLimits } from "./types.js";

export const DEFAULT_QUERY_TIMEOUT_MS = 2_000;

export const DEFAULT_DNS_LIMITS: DnsServerLimits = {
  maxInFlightQueries: 1024,
  // Real queries stay under 600 bytes even with EDNS cookies and TSIG.
  maxQueryBytes: 4096,
  maxTcpConnections: 128,
  // RFC 7766 section 6.2.3 recommends a server idle timeout on the order of seconds.
  tcpIdleTimeoutMs: 10_000,
  maxTcpBufferedBytes: 16 * 1024,
  maxTcpQueriesPerConnection: 16,
  maxTcpWriteBacklogBytes: 256 * 1024,
};

/** Largest UDP response this server sends: the EDNS0 default from DNS Flag Day 2020, which avoids IP fragmentation. */
export const MAX_UDP_RESPONSE_BYTES = 1232;

/**
 * UDP response limit without EDNS0 (RFC 1035 section 4.2.1), and the floor
 * for a client's EDNS0 size (RFC 6891 section 6.2.3).
 */
export const MIN_UDP_RESPONSE_BYTES = 512;

/** A TCP message carries a 16-bit length (RFC 1035 section 4.2.2). */
export const MAX_TCP_MESSAGE_BYTES = 65_535;
