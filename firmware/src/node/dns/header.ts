// Raw DNS header access (RFC 1035 section 4.1.1), used before any full decode.

export const HEADER_BYTES = 12;

/** Smallest question: the root name (1 byte), QTYPE and QCLASS. */
export const MIN_QUESTION_BYTES = 5;

/** Smallest resource record: the root name (1 byte), TYPE, CLASS, TTL and RDLENGTH. */
export const MIN_RR_BYTES = 11;

export const OPCODE_QUERY = 0;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended RCODE 16 (RFC 6891 section 6.1.3): the upper 8 bits go into the OPT record. */
  BADVERS: 16,
} as const;

const QR_BIT = 0x8000;
const RD_BIT = 0x0100;
const CD_BIT = 0x0010;

export interface RawHeader {
  id: number;
  /** Flags word with QR, OPCODE, AA, TC, RD, RA, Z, AD, CD and RCODE. */
  flags: number;
  isResponse: boolean;
  opcode: number;
  recursionDesired: boolean;
  checkingDisabled: boolean;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

/** Reads the header fields. The caller checks that `message` has at least HEADER_BYTES bytes. */
export function readHeader(message: Buffer): RawHeader {
  const flags = message.readUInt16BE(2);
  return {
    id: message.readUInt16BE(0),
    flags,
    isResponse: (flags & QR_BIT) !== 0,
    opcode: (flags >> 11) & 0x0f,
    recursionDesired: (flags & RD_BIT) !== 0,
    checkingDisabled: (flags & CD_BIT) !== 0,
    qdcount: message.readUInt16BE(4),
    ancount: message.readUInt16BE(6),
    nscount: message.readUInt16BE(8),
    arcount: message.readUInt16BE(10),
  };
}

/**
 * Tells whether the section counts could fit in `messageBytes`. dns-packet
 * allocates an array per count before it reads a record, so a 12-byte message
 * with counts of 65535 would cost milliseconds to reject after decoding.
 */
export function countsFitLength(header: RawHeader, messageBytes: number): boolean {
  const records = header.ancount + header.nscount + header.arcount;
  const minBytes = HEADER_BYTES + header.qdcount * MIN_QUESTION_BYTES + records * MIN_RR_BYTES;
  return minBytes <= messageBytes;
}
