// Turns one query message into one response message (or none), whatever the
// transport. Every drop and every error response is counted by reason.
import type { Counters } from "../../util/counters.js";
import type { Logger, RateLimitedLog } from "../../util/log.js";
import { SUPPORTED_EDNS_VERSION, responseLimitBytes } from "./edns.js";
import type { Transport } from "./edns.js";
import type { Forwarder } from "./forwarder.js";
import { Rcode } from "./header.js";
import { resolveOverlayQuestion } from "./overlay-resolver.js";
import type { OverlayZone } from "./overlay-zone.js";
import { decodeQuery } from "./query-decoder.js";
import type { ParsedQuery } from "./query-decoder.js";
import { encodeHeaderOnlyResponse, encodeResponse, encodeTruncatedResponse } from "./response.js";
import type { ResponseContent } from "./response.js";
import type { DnsQueryContext, OverlayLookup } from "./types.js";

export interface QuerySource {
  address: string;
  port: number;
  transport: Transport;
}

export interface QueryHandlerDeps {
  zone: OverlayZone;
  lookup: OverlayLookup;
  forwarder: Forwarder | null;
  queryTimeoutMs: number;
  maxQueryBytes: number;
  counters: Counters;
  log: Logger;
  warnings: RateLimitedLog;
}

export function endpointOf(source: { address: string; port: number }): string {
  return source.address.includes(":") ? `[${source.address}]:${source.port}` : `${source.address}:${source.port}`;
}

export class QueryHandler {
  /** Queries between receipt and response, over all transports. */
  inFlight = 0;

  constructor(private readonly deps: QueryHandlerDeps) {}

  /** Counts a dropped message and logs it, rate-limited per reason. */
  drop(reason: string, source: { address: string; port: number }): void {
    this.deps.counters.add(`dns.drop.${reason}`);
    this.deps.warnings.warn(`drop:${reason}`, { reason, endpoint: endpointOf(source) }, "DNS message dropped");
  }

  /** Returns the response to `message`, or null when it is dropped. Does not throw. */
  async handle(message: Buffer, source: QuerySource): Promise<Buffer | null> {
    this.inFlight++;
    try {
      return await this.respond(message, source);
    } catch (err) {
      this.drop("internal_error", source);
      this.deps.log.error({ err, reason: "internal_error", endpoint: endpointOf(source) }, "DNS query handling failed");
      return null;
    } finally {
      this.inFlight--;
    }
  }

  private async respond(message: Buffer, source: QuerySource): Promise<Buffer | null> {
    const { counters } = this.deps;
    counters.add(`dns.query.${source.transport}`);
    const recursionAvailable = this.deps.forwarder !== null;

    const decoded = decodeQuery(message, this.deps.maxQueryBytes);
    if (decoded.kind === "drop") {
      this.drop(decoded.reason, source);
      return null;
    }
    if (decoded.kind === "error") {
      const rcodeName = decoded.rcode === Rcode.NOTIMP ? "notimp" : "formerr";
      counters.add(`dns.${rcodeName}.${decoded.reason}`);
      this.deps.warnings.warn(
        `${rcodeName}:${decoded.reason}`,
        { reason: decoded.reason, endpoint: endpointOf(source) },
        `DNS query rejected with ${rcodeName.toUpperCase()}`,
      );
      return encodeHeaderOnlyResponse(decoded.header, decoded.rcode, recursionAvailable);
    }

    const query = decoded.query;
    const limitBytes = responseLimitBytes(source.transport, query.edns);
    const reply = (content: ResponseContent): Buffer => {
      const encoded = encodeResponse(query, content, { recursionAvailable, limitBytes });
      if (encoded.truncated) counters.add("dns.truncated");
      return encoded.message;
    };

    if (query.edns && query.edns.version > SUPPORTED_EDNS_VERSION) {
      counters.add("dns.badvers");
      return reply({ rcode: Rcode.BADVERS, authoritative: false });
    }

    const relation = this.deps.zone.classify(query.question.labels);
    if (relation.kind === "outside") return this.forwardOrRefuse(message, query, source, limitBytes);

    const ctx: DnsQueryContext = { question: { ...query.questionText }, source: { ...source } };
    const resolution = await resolveOverlayQuestion(relation, query, ctx, {
      zone: this.deps.zone,
      lookup: this.deps.lookup,
      timeoutMs: this.deps.queryTimeoutMs,
    });
    counters.add(`dns.overlay.${resolution.outcome}`);
    if (resolution.content.rcode === Rcode.SERVFAIL) {
      const fqdn = relation.kind === "member" ? relation.fqdn : undefined;
      const fields = resolution.error instanceof Error ? { err: resolution.error } : { detail: resolution.error };
      this.deps.warnings.warn(
        `overlay:${resolution.outcome}`,
        { reason: resolution.outcome, fqdn, endpoint: endpointOf(source), ...fields },
        "overlay lookup failed, sending SERVFAIL",
      );
    }
    return reply(resolution.content);
  }

  private async forwardOrRefuse(
    message: Buffer,
    query: ParsedQuery,
    source: QuerySource,
    limitBytes: number,
  ): Promise<Buffer> {
    const { counters, forwarder } = this.deps;
    const recursionAvailable = forwarder !== null;
    const reply = (rcode: number): Buffer =>
      encodeResponse(query, { rcode, authoritative: false }, { recursionAvailable, limitBytes }).message;

    if (!forwarder) {
      counters.add("dns.refused");
      return reply(Rcode.REFUSED);
    }

    const result = await forwarder.forward(message, query.question.bytes, source.transport);
    if (result.kind !== "response") {
      const reason = result.kind === "timeout" ? "forward_timeout" : "forward_error";
      counters.add(`dns.${reason}`);
      const err = result.kind === "error" ? result.err : undefined;
      this.deps.warnings.warn(
        reason,
        { reason, err, endpoint: endpointOf(forwarder.upstream) },
        "forwarding to the upstream resolver failed, sending SERVFAIL",
      );
      return reply(Rcode.SERVFAIL);
    }

    counters.add("dns.forwarded");
    if (result.message.length <= limitBytes) return result.message;

    counters.add("dns.truncated");
    const upstreamRcode = result.message.readUInt16BE(2) & 0x0f;
    return encodeTruncatedResponse(query, upstreamRcode, false, true);
  }
}
