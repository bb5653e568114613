// Response encoding with dns-packet. The question section is the query's own
// bytes, because dns-packet would re-encode the name from text and could
// change it, and clients compare the returned question with their own.
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { HEADER_BYTES } from "./header.js";
import type { RawHeader } from "./header.js";
import { responseOpt } from "./edns.js";
import type { ParsedQuery } from "./query-decoder.js";

export interface ResponseContent {
  /** RCODE, extended RCODEs (16 and up) included. */
  rcode: number;
  authoritative: boolean;
  answers?: Answer[];
  authorities?: Answer[];
}

export interface EncodedResponse {
  message: Buffer;
  /** Whether the content did not fit and the message was cut to header, question and OPT. */
  truncated: boolean;
}

interface HeaderFlags {
  opcode: number;
  rcode: number;
  authoritative: boolean;
  truncated: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  checkingDisabled: boolean;
}

function flagsWord(flags: HeaderFlags): number {
  let word = (flags.opcode & 0x0f) << 11;
  if (flags.authoritative) word |= dnsPacket.AUTHORITATIVE_ANSWER;
  if (flags.truncated) word |= dnsPacket.TRUNCATED_RESPONSE;
  if (flags.recursionDesired) word |= dnsPacket.RECURSION_DESIRED;
  if (flags.recursionAvailable) word |= dnsPacket.RECURSION_AVAILABLE;
  if (flags.checkingDisabled) word |= dnsPacket.CHECKING_DISABLED;
  return word | (flags.rcode & 0x0f);
}

function spliceQuestion(encoded: Buffer, questionBytes: Buffer): Buffer {
  const message = Buffer.concat([encoded.subarray(0, HEADER_BYTES), questionBytes, encoded.subarray(HEADER_BYTES)]);
  message.writeUInt16BE(1, 4);
  return message;
}

function queryFlags(
  query: ParsedQuery,
  rcode: number,
  authoritative: boolean,
  recursionAvailable: boolean,
): HeaderFlags {
  return {
    opcode: query.header.opcode,
    rcode,
    authoritative,
    truncated: false,
    recursionDesired: query.header.recursionDesired,
    recursionAvailable,
    checkingDisabled: query.header.checkingDisabled,
  };
}

/**
 * Encodes a response to `query`. When it exceeds `limitBytes` the message is
 * replaced by the truncated form, so the client retries over TCP.
 */
export function encodeResponse(
  query: ParsedQuery,
  content: ResponseContent,
  options: { recursionAvailable: boolean; limitBytes: number },
): EncodedResponse {
  const flags = queryFlags(query, content.rcode, content.authoritative, options.recursionAvailable);
  const full = spliceQuestion(
    dnsPacket.encode({
      type: "response",
      id: query.header.id,
      flags: flagsWord(flags),
      answers: content.answers ?? [],
      authorities: content.authorities ?? [],
      additionals: query.edns ? [responseOpt(query.edns, content.rcode)] : [],
    }),
    query.question.bytes,
  );
  if (full.length <= options.limitBytes) return { message: full, truncated: false };
  return {
    message: encodeTruncatedResponse(query, content.rcode, content.authoritative, options.recursionAvailable),
    truncated: true,
  };
}

/**
 * Encodes the header, the question and the OPT record with TC set and no
 * other records (RFC 2181 section 9). The result is at most 12 + 259 + 11
 * bytes, so it fits the 512-byte UDP minimum.
 */
export function encodeTruncatedResponse(
  query: ParsedQuery,
  rcode: number,
  authoritative: boolean,
  recursionAvailable: boolean,
): Buffer {
  const flags = { ...queryFlags(query, rcode, authoritative, recursionAvailable), truncated: true };
  return spliceQuestion(
    dnsPacket.encode({
      type: "response",
      id: query.header.id,
      flags: flagsWord(flags),
      additionals: query.edns ? [responseOpt(query.edns, rcode)] : [],
    }),
    query.question.bytes,
  );
}

/**
 * Encodes a header-only response for a query that could not be parsed far
 * enough to echo its question (FORMERR) or has an unsupported OPCODE (NOTIMP).
 */
export function encodeHeaderOnlyResponse(header: RawHeader, rcode: number, recursionAvailable: boolean): Buffer {
  return dnsPacket.encode({
    type: "response",
    id: header.id,
    flags: flagsWord({
      opcode: header.opcode,
      rcode,
      authoritative: false,
      truncated: false,
      recursionDesired: header.recursionDesired,
      recursionAvailable,
      checkingDisabled: header.checkingDisabled,
    }),
  });
}
