// Guarded decoding of a query message: cheap header checks first, then
// dns-packet, then checks of what dns-packet accepts but a server must not.
import dnsPacket from "dns-packet";
import type { OptAnswer } from "dns-packet";
import { countsFitLength, HEADER_BYTES, OPCODE_QUERY, Rcode, readHeader } from "./header.js";
import type { RawHeader } from "./header.js";
import { parseQuestion } from "./question.js";
import type { RawQuestion } from "./question.js";

/** EDNS0 parameters from the query's OPT record (RFC 6891 section 6.1.2). */
export interface EdnsRequest {
  udpPayloadBytes: number;
  version: number;
  dnssecOk: boolean;
}

export interface ParsedQuery {
  header: RawHeader;
  question: RawQuestion;
  /** Presentation form from dns-packet, case as sent, without a trailing dot. */
  questionText: { name: string; type: string; class: string };
  edns: EdnsRequest | null;
}

/**
 * A "drop" gets no response at all. An "error" gets a header-only response
 * with `rcode`, which is never larger than the query, so it cannot amplify.
 */
export type QueryDecodeResult =
  | { kind: "query"; query: ParsedQuery }
  | { kind: "drop"; reason: string }
  | { kind: "error"; reason: string; rcode: number; header: RawHeader };

export function decodeQuery(message: Buffer, maxQueryBytes: number): QueryDecodeResult {
  if (message.length < HEADER_BYTES) return { kind: "drop", reason: "short_header" };
  if (message.length > maxQueryBytes) return { kind: "drop", reason: "query_too_large" };

  const header = readHeader(message);
  // Responding to a response could start a loop between two servers.
  if (header.isResponse) return { kind: "drop", reason: "response" };
  if (!countsFitLength(header, message.length)) return { kind: "drop", reason: "implausible_counts" };
  if (header.opcode !== OPCODE_QUERY) return { kind: "error", reason: "opcode", rcode: Rcode.NOTIMP, header };
  if (header.qdcount !== 1) return { kind: "error", reason: "qdcount", rcode: Rcode.FORMERR, header };

  let decoded: dnsPacket.DecodedPacket;
  try {
    decoded = dnsPacket.decode(message);
  } catch {
    return { kind: "error", reason: "decode", rcode: Rcode.FORMERR, header };
  }
  // dns-packet reads an RDLENGTH past the end without an error and reports
  // more bytes consumed than the message has.
  if (dnsPacket.decode.bytes > message.length) {
    return { kind: "error", reason: "decode_overrun", rcode: Rcode.FORMERR, header };
  }

  const parsed = parseQuestion(message);
  if (!parsed.ok) return { kind: "error", reason: parsed.reason, rcode: Rcode.FORMERR, header };
  const decodedQuestion = decoded.questions?.[0];
  if (!decodedQuestion) return { kind: "error", reason: "decode", rcode: Rcode.FORMERR, header };

  const optRecords = (decoded.additionals ?? []).filter((record): record is OptAnswer => record.type === "OPT");
  // RFC 6891 section 6.1.1: at most one OPT record, owned by the root.
  if (optRecords.length > 1) return { kind: "error", reason: "opt_count", rcode: Rcode.FORMERR, header };
  const opt = optRecords[0];
  if (opt && opt.name !== ".") return { kind: "error", reason: "opt_name", rcode: Rcode.FORMERR, header };

  return {
    kind: "query",
    query: {
      header,
      question: parsed.question,
      questionText: {
        name: decodedQuestion.name,
        type: decodedQuestion.type,
        class: decodedQuestion.class ?? "IN",
      },
      edns: opt
        ? {
            udpPayloadBytes: opt.udpPayloadSize,
            version: opt.ednsVersion,
            dnssecOk: (opt.flags & dnsPacket.DNSSEC_OK) !== 0,
          }
        : null,
    },
  };
}
