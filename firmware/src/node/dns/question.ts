// Wire-level parsing of the single question (RFC 1035 section 4.1.2).
//
// dns-packet turns a name into dotted text, which loses label boundaries when
// a label contains '.' and changes bytes that are not valid UTF-8. The server
// therefore reads the labels itself, matches the overlay zone on them, and
// copies the question bytes unchanged into the response.
import { HEADER_BYTES } from "./header.js";

/** RFC 1035 section 2.3.4: a name is at most 255 bytes on the wire, length bytes and root included. */
const MAX_NAME_BYTES = 255;

export const QTYPE_A = 1;
export const QTYPE_AXFR = 252;
export const QTYPE_IXFR = 251;
export const QTYPE_ANY = 255;
export const QCLASS_IN = 1;
export const QCLASS_ANY = 255;

export interface RawQuestion {
  /** Labels in wire order, without length bytes, case as sent. */
  labels: Buffer[];
  qtype: number;
  qclass: number;
  /** The question section bytes exactly as sent. */
  bytes: Buffer;
}

export type QuestionParseResult = { ok: true; question: RawQuestion } | { ok: false; reason: string };

/** Parses the question that starts right after the header. */
export function parseQuestion(message: Buffer): QuestionParseResult {
  const labels: Buffer[] = [];
  let offset = HEADER_BYTES;
  let nameBytes = 1;

  while (true) {
    const length = message[offset];
    if (length === undefined) return { ok: false, reason: "question_truncated" };
    offset++;
    if (length === 0) break;

    // A compression pointer in the first name of a message can only point into
    // the header, and no client sends one.
    if ((length & 0xc0) === 0xc0) return { ok: false, reason: "question_compressed" };
    if ((length & 0xc0) !== 0) return { ok: false, reason: "question_label_type" };

    nameBytes += length + 1;
    if (nameBytes > MAX_NAME_BYTES) return { ok: false, reason: "question_name_too_long" };
    if (offset + length > message.length) return { ok: false, reason: "question_truncated" };

    labels.push(message.subarray(offset, offset + length));
    offset += length;
  }

  if (offset + 4 > message.length) return { ok: false, reason: "question_truncated" };
  const qtype = message.readUInt16BE(offset);
  const qclass = message.readUInt16BE(offset + 2);
  offset += 4;

  return { ok: true, question: { labels, qtype, qclass, bytes: message.subarray(HEADER_BYTES, offset) } };
}

/**
 * Returns the label lower-cased when it is a host name label (letters, digits,
 * '-', '_'), else null. Case folding is ASCII only (RFC 4343).
 */
export function hostLabelText(label: Buffer): string | null {
  if (label.length === 0) return null;
  let text = "";
  for (const byte of label) {
    const isUpper = byte >= 0x41 && byte <= 0x5a;
    const isLower = byte >= 0x61 && byte <= 0x7a;
    const isDigit = byte >= 0x30 && byte <= 0x39;
    if (!(isUpper || isLower || isDigit || byte === 0x2d || byte === 0x5f)) return null;
    text += String.fromCharCode(isUpper ? byte + 0x20 : byte);
  }
  return text;
}
