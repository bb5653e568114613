// IPv4 header parsing and the Internet checksum (RFC 791, RFC 1071).
// Pure functions, so the tunnel data path can call them per packet.

/** Size of the fixed IPv4 header. Options follow it when IHL > 5 (RFC 791 section 3.1). */
export const IPV4_MIN_HEADER_BYTES = 20;

export const IP_PROTOCOL_ICMP = 1;
export const IP_PROTOCOL_TCP = 6;
export const IP_PROTOCOL_UDP = 17;

/** Fields of an IPv4 header that the node reads, with addresses as dotted-quad strings. */
export interface IPv4Header {
  version: 4;
  headerLength: number;
  totalLength: number;
  protocol: number;
  source: string;
  destination: string;
}

/**
 * Computes the Internet checksum (RFC 1071) over `length` bytes of `buf` from
 * `offset`: the one's complement of the one's complement sum of 16-bit
 * big-endian words, with an odd last byte padded by a zero byte.
 * Over a header whose checksum field is correct the result is 0.
 * Throws RangeError when the range does not fit in `buf`.
 */
export function ipv4Checksum(buf: Uint8Array, offset: number, length: number): number {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > buf.length) {
    throw new RangeError(`checksum range offset=${offset} length=${length} is outside the ${buf.length}-byte buffer`);
  }
  let sum = 0;
  const end = offset + length;
  let i = offset;
  for (; i + 1 < end; i += 2) {
    sum += ((buf[i] as number) << 8) | (buf[i + 1] as number);
  }
  if (i < end) {
    sum += (buf[i] as number) << 8;
  }
  // Fold the carries back in (RFC 1071 section 4.1). The unfolded sum stays an
  // exact integer below 2^53 for any buffer shorter than 2^38 bytes.
  while (sum > 0xffff) {
    sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  }
  return ~sum & 0xffff;
}

/**
 * Reads the IPv4 header at the start of `packet`. Returns null when the packet
 * is not a well-formed IPv4 datagram: shorter than 20 bytes, version other than
 * 4, IHL below 5, header longer than the buffer, or total length smaller than
 * the header or larger than the buffer.
 * Bytes after the total length (link padding) are allowed.
 * The header checksum is not verified; `ipv4Checksum(packet, 0, headerLength) === 0`
 * checks it.
 */
export function readIPv4Header(packet: Uint8Array): IPv4Header | null {
  if (packet.length < IPV4_MIN_HEADER_BYTES) return null;
  const versionAndIhl = packet[0] as number;
  if (versionAndIhl >> 4 !== 4) return null;
  // IHL counts 32-bit words (RFC 791 section 3.1).
  const headerLength = (versionAndIhl & 0x0f) * 4;
  if (headerLength < IPV4_MIN_HEADER_BYTES || headerLength > packet.length) return null;
  const totalLength = ((packet[2] as number) << 8) | (packet[3] as number);
  if (totalLength < headerLength || totalLength > packet.length) return null;
  return {
    version: 4,
    headerLength,
    totalLength,
    protocol: packet[9] as number,
    source: formatIPv4Address(packet, 12),
    destination: formatIPv4Address(packet, 16),
  };
}

function formatIPv4Address(buf: Uint8Array, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}
