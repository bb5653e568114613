// EDNS0 (RFC 6891): response size limits and the response OPT record.
import type { OptAnswer } from "dns-packet";
import { MAX_TCP_MESSAGE_BYTES, MAX_UDP_RESPONSE_BYTES, MIN_UDP_RESPONSE_BYTES } from "./limits.js";
import type { EdnsRequest } from "./query-decoder.js";

export type Transport = "udp" | "tcp";

/** Only EDNS version 0 exists; a higher version gets BADVERS (RFC 6891 section 6.1.3). */
export const SUPPORTED_EDNS_VERSION = 0;

const DNSSEC_OK_BIT = 0x8000;

/**
 * Returns the largest response the client accepts, in bytes: over UDP the
 * client's EDNS0 payload size clamped to 512..1232, or 512 without EDNS0.
 */
export function responseLimitBytes(transport: Transport, edns: EdnsRequest | null): number {
  if (transport === "tcp") return MAX_TCP_MESSAGE_BYTES;
  if (!edns) return MIN_UDP_RESPONSE_BYTES;
  return Math.max(MIN_UDP_RESPONSE_BYTES, Math.min(edns.udpPayloadBytes, MAX_UDP_RESPONSE_BYTES));
}

/**
 * Builds the response OPT record. It advertises this server's own receive
 * limit (RFC 6891 section 6.2), carries the upper 8 bits of an extended
 * RCODE, and copies the DO bit (RFC 3225 section 3).
 */
export function responseOpt(edns: EdnsRequest, rcode: number): OptAnswer {
  return {
    type: "OPT",
    name: ".",
    udpPayloadSize: MAX_UDP_RESPONSE_BYTES,
    extendedRcode: rcode >> 4,
    ednsVersion: SUPPORTED_EDNS_VERSION,
    flags: edns.dnssecOk ? DNSSEC_OK_BIT : 0,
    flag_do: edns.dnssecOk,
    options: [],
  };
}
