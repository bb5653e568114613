// DNS server of the node daemon: overlay names from the lookup, every other
// name forwarded to the upstream resolver or refused.
import { Counters } from "../../util/counters.js";
import { logger, RateLimitedLog } from "../../util/log.js";
import { Forwarder } from "./forwarder.js";
import { DEFAULT_DNS_LIMITS, DEFAULT_QUERY_TIMEOUT_MS } from "./limits.js";
import { OverlayZone } from "./overlay-zone.js";
import { endpointOf, QueryHandler } from "./query-handler.js";
import type { TcpConnectionDeps } from "./tcp-connection.js";
import { TcpListener } from "./tcp-listener.js";
import { UdpListener } from "./udp-listener.js";
import type { DnsServerLimits, DnsServerOptions, ListenAddress } from "./types.js";

/** Ephemeral UDP ports tried, for port 0, before giving up on one that is also free for TCP. */
const EPHEMERAL_PORT_ATTEMPTS = 8;

function isAddressInUse(err: unknown): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === "EADDRINUSE";
}

export class DnsServer {
  readonly counters: Counters;
  /** Bound addresses in the order of `listen`, with the port chosen for a requested port 0. */
  readonly listening: ListenAddress[] = [];
  private readonly udpListeners: UdpListener[] = [];
  private readonly tcpListeners: TcpListener[] = [];
  private closePromise: Promise<void> | null = null;

  private constructor(
    private readonly handlerDeps: TcpConnectionDeps,
    private readonly forwarder: Forwarder | null,
    private readonly log: ReturnType<typeof logger>,
  ) {
    this.counters = handlerDeps.counters;
  }

  /** Binds UDP and TCP on every listen address. Rejects, with nothing left bound, when any bind fails. */
  static async start(opts: DnsServerOptions): Promise<DnsServer> {
    if (opts.listen.length === 0) throw new Error("DNS server needs at least one listen address");
    const queryTimeoutMs = opts.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
    if (!(queryTimeoutMs > 0)) {
      throw new Error(`invalid queryTimeoutMs ${queryTimeoutMs}: expected a positive number of milliseconds`);
    }

    const upstream = opts.upstream ?? null;
    // Forwarding to itself would pass each query around until the in-flight cap is reached.
    if (upstream && opts.listen.some((listen) => listen.address === upstream.address && listen.port === upstream.port)) {
      throw new Error(`upstream ${endpointOf(upstream)} is a listen address of this DNS server: set another resolver`);
    }

    const zone = new OverlayZone(opts.overlayDomain);
    const limits: DnsServerLimits = { ...DEFAULT_DNS_LIMITS, ...opts.limits };
    const counters = new Counters();
    const log = logger("dns");
    const warnings = new RateLimitedLog(log);
    const forwarder = upstream
      ? new Forwarder(upstream, queryTimeoutMs, (reason) => {
          counters.add(`dns.drop.upstream_mismatch_${reason}`);
          const message = "response from the upstream resolver does not match the query, ignored";
          warnings.warn(`upstream_mismatch:${reason}`, { reason, endpoint: endpointOf(upstream) }, message);
        })
      : null;
    const handler = new QueryHandler({
      zone,
      lookup: opts.lookup,
      forwarder,
      queryTimeoutMs,
      maxQueryBytes: limits.maxQueryBytes,
      counters,
      log,
      warnings,
    });

    const server = new DnsServer({ handler, limits, counters, warnings }, forwarder, log);
    try {
      for (const listen of opts.listen) await server.bindPair(listen);
    } catch (err) {
      await server.close();
      throw err;
    }
    log.info(
      { listen: server.listening, overlayDomain: zone.domain, upstream, queryTimeoutMs },
      "DNS server started",
    );
    return server;
  }

  /** Binds UDP, then TCP on the same port, retrying when an ephemeral UDP port is taken for TCP. */
  private async bindPair(listen: ListenAddress): Promise<void> {
    const { handler, limits, counters, warnings } = this.handlerDeps;
    const udpDeps = { handler, maxInFlightQueries: limits.maxInFlightQueries, counters, warnings };
    const attempts = listen.port === 0 ? EPHEMERAL_PORT_ATTEMPTS : 1;

    for (let attempt = 1; ; attempt++) {
      const udp = await UdpListener.bind(listen.address, listen.port, udpDeps);
      try {
        const tcp = await TcpListener.listen(listen.address, udp.port, this.handlerDeps);
        this.udpListeners.push(udp);
        this.tcpListeners.push(tcp);
        this.listening.push({ address: listen.address, port: udp.port });
        return;
      } catch (err) {
        await udp.close();
        if (!isAddressInUse(err) || attempt >= attempts) throw err;
      }
    }
  }

  /** Stops listening, closes TCP connections and abandons queries in progress. Safe to call twice. */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      this.forwarder?.close();
      await Promise.all([...this.udpListeners.map((l) => l.close()), ...this.tcpListeners.map((l) => l.close())]);
      this.log.info({ listen: this.listening }, "DNS server stopped");
    })();
    return this.closePromise;
  }
}
