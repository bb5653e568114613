// Public types of the DNS server: the lookup contract and the start options.

export interface DnsQueryContext {
  /** Question as sent: `name` keeps its case, `type` and `class` are mnemonics ("A", "IN", "UNKNOWN_65280"). */
  question: { name: string; type: string; class: string };
  source: { address: string; port: number; transport: "udp" | "tcp" };
}

export type OverlayLookupResult =
  | { kind: "address"; ipv4: string; ttlSeconds: number }
  | { kind: "nxdomain" }
  | { kind: "servfail"; reason: string };

/**
 * Resolves one overlay name. `fqdn` is lower-cased, has no trailing dot and
 * contains only letters, digits, '-' and '_'. The server calls it for every
 * query type of a name below the apex, because a non-A query still needs to
 * know whether the name exists (NODATA versus NXDOMAIN).
 */
export type OverlayLookup = (fqdn: string, ctx: DnsQueryContext) => Promise<OverlayLookupResult>;

export interface ListenAddress {
  address: string;
  /** 0 binds an ephemeral port, and TCP then takes the port UDP received. */
  port: number;
}

/** Resource caps. Every field has a default in DEFAULT_DNS_LIMITS. */
export interface DnsServerLimits {
  /**
   * Queries being resolved at once over all transports. A UDP query that
   * arrives at this count is dropped. TCP queries are not checked against it,
   * because maxTcpConnections times maxTcpQueriesPerConnection bounds them.
   */
  maxInFlightQueries: number;
  /** Largest query message accepted, in bytes, over UDP and TCP. */
  maxQueryBytes: number;
  maxTcpConnections: number;
  /** A TCP connection with no traffic and no query in progress for this long is closed. */
  tcpIdleTimeoutMs: number;
  /** Unprocessed bytes one TCP connection may hold before it is closed. */
  maxTcpBufferedBytes: number;
  /** Pipelined queries of one TCP connection resolved at once (RFC 7766 section 6.2.1.1). */
  maxTcpQueriesPerConnection: number;
  /** Response bytes queued for a TCP client that does not read before the connection is closed. */
  maxTcpWriteBacklogBytes: number;
}

export interface DnsServerOptions {
  listen: ListenAddress[];
  /** Overlay zone apex, for example "cyphonic.internal". Case and a trailing dot are ignored. */
  overlayDomain: string;
  lookup: OverlayLookup;
  /** Resolver that receives every query outside the overlay zone. With null or absent, those queries get REFUSED. */
  upstream?: { address: string; port: number } | null;
  /** Time allowed for one lookup or one upstream exchange before the client receives SERVFAIL. */
  queryTimeoutMs?: number;
  limits?: Partial<DnsServerLimits>;
}
