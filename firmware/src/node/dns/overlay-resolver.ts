// Answers a question inside the overlay zone from the OverlayLookup.
import { isIPv4 } from "node:net";
import { Rcode } from "./header.js";
import type { OverlayZone, NameRelation } from "./overlay-zone.js";
import { QCLASS_ANY, QCLASS_IN, QTYPE_A, QTYPE_ANY, QTYPE_AXFR, QTYPE_IXFR } from "./question.js";
import type { ParsedQuery } from "./query-decoder.js";
import type { ResponseContent } from "./response.js";
import { withTimeout } from "./timeout.js";
import type { DnsQueryContext, OverlayLookup } from "./types.js";

/** RFC 2181 section 8: a TTL is an unsigned 31-bit number of seconds. */
const MAX_TTL_SECONDS = 2 ** 31 - 1;

export interface OverlayResolution {
  content: ResponseContent;
  /** Stable outcome code for counters and logs. */
  outcome: string;
  /** Detail for a SERVFAIL outcome, logged by the caller. */
  error?: unknown;
}

export interface OverlayResolverDeps {
  zone: OverlayZone;
  lookup: OverlayLookup;
  timeoutMs: number;
}

export async function resolveOverlayQuestion(
  relation: Exclude<NameRelation, { kind: "outside" }>,
  query: ParsedQuery,
  ctx: DnsQueryContext,
  deps: OverlayResolverDeps,
): Promise<OverlayResolution> {
  const { qtype, qclass } = query.question;
  const negative = (rcode: number, outcome: string): OverlayResolution => ({
    content: { rcode, authoritative: true, authorities: [deps.zone.soaRecord()] },
    outcome,
  });
  const failure = (outcome: string, error?: unknown): OverlayResolution => ({
    content: { rcode: Rcode.SERVFAIL, authoritative: false },
    outcome,
    error,
  });

  // The zone exists only in class IN. Zone transfers are not offered, because
  // the member list is not public.
  if (qclass !== QCLASS_IN && qclass !== QCLASS_ANY) {
    return { content: { rcode: Rcode.REFUSED, authoritative: false }, outcome: "refused_class" };
  }
  if (qtype === QTYPE_AXFR || qtype === QTYPE_IXFR) {
    return { content: { rcode: Rcode.REFUSED, authoritative: false }, outcome: "refused_transfer" };
  }
  if (relation.kind === "apex") return negative(Rcode.NOERROR, "nodata");
  if (relation.kind === "invalid_member") return negative(Rcode.NXDOMAIN, "nxdomain_invalid_name");

  let result;
  try {
    const timed = await withTimeout(deps.lookup(relation.fqdn, ctx), deps.timeoutMs);
    if (timed.timedOut) return failure("lookup_timeout");
    result = timed.value;
  } catch (err) {
    return failure("lookup_error", err);
  }

  if (result.kind === "servfail") return failure("lookup_servfail", result.reason);
  if (result.kind === "nxdomain") return negative(Rcode.NXDOMAIN, "nxdomain");
  if (!isIPv4(result.ipv4) || !Number.isFinite(result.ttlSeconds)) {
    return failure("lookup_invalid_result", `ipv4=${String(result.ipv4)} ttlSeconds=${String(result.ttlSeconds)}`);
  }

  // Other types of an existing name are NODATA (RFC 2308 section 2.2). ANY
  // gets the A record only, which RFC 8482 section 4.1 allows.
  if (qtype !== QTYPE_A && qtype !== QTYPE_ANY) return negative(Rcode.NOERROR, "nodata");

  const ttl = Math.min(Math.max(Math.floor(result.ttlSeconds), 0), MAX_TTL_SECONDS);
  return {
    content: {
      rcode: Rcode.NOERROR,
      authoritative: true,
      answers: [{ type: "A", name: query.questionText.name, class: "IN", ttl, data: result.ipv4 }],
    },
    outcome: "answer",
  };
}
