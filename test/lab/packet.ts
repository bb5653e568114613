// Decodes captured frames down to the transport payload, so tests can check
// addresses, ports and payload bytes without a dissector.

export interface DecodedPacket {
  /** Capture time in microseconds since the Unix epoch. */
  timeUs: number;
  /** The whole captured frame, link-layer header included. */
  frame: Buffer;
  ip?: IpHeader;
  transport?: TransportHeader;
  /** Bytes after the innermost decoded header: the UDP or TCP payload, the ICMP body after its 8-byte header, or the IP payload of another protocol. Empty when the frame is not IP. */
  payload: Buffer;
}

export interface IpHeader {
  version: 4 | 6;
  src: string;
  dst: string;
  /** IPv4 protocol or IPv6 next-header number, for example 17 for UDP. */
  protocol: number;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl: number;
}

export interface TransportHeader {
  kind: "udp" | "tcp" | "icmp" | "icmpv6";
  /** Source port, or 0 for ICMP. */
  srcPort: number;
  /** Destination port, or 0 for ICMP. */
  dstPort: number;
}

// LINKTYPE_* values from the tcpdump.org link-layer header registry.
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_LINUX_SLL2 = 276;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const PROTOCOL_ICMP = 1;
const PROTOCOL_TCP = 6;
const PROTOCOL_UDP = 17;
const PROTOCOL_ICMPV6 = 58;

/** Decodes one frame of link type `linkType`, leaving undefined the fields it cannot decode. */
export function decodeFrame(linkType: number, frame: Buffer, timeUs = 0): DecodedPacket {
  const packet: DecodedPacket = { timeUs, frame, payload: Buffer.alloc(0) };
  const network = findNetworkLayer(linkType, frame);
  if (network === undefined) {
    return packet;
  }
  const ipPacket = frame.subarray(network.offset);
  const decoded = network.version === 4 ? decodeIpv4(ipPacket) : decodeIpv6(ipPacket);
  if (decoded === undefined) {
    return packet;
  }
  packet.ip = decoded.header;
  packet.payload = decoded.payload;
  decodeTransport(packet, decoded.payload);
  return packet;
}

/** Returns the packets whose transport payload contains `needle`. */
export function packetsContaining(packets: readonly DecodedPacket[], needle: Buffer | string): DecodedPacket[] {
  const bytes = typeof needle === "string" ? Buffer.from(needle, "utf8") : needle;
  return packets.filter((packet) => packet.payload.includes(bytes));
}

function findNetworkLayer(linkType: number, frame: Buffer): { offset: number; version: 4 | 6 } | undefined {
  let offset: number;
  let etherType: number;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      if (frame.length < 14) return undefined;
      offset = 14;
      etherType = frame.readUInt16BE(12);
      // Only one 802.1Q tag is skipped, because the lab does not stack VLANs.
      if (etherType === ETHERTYPE_VLAN && frame.length >= 18) {
        etherType = frame.readUInt16BE(16);
        offset = 18;
      }
      break;
    case LINKTYPE_LINUX_SLL:
      if (frame.length < 16) return undefined;
      offset = 16;
      etherType = frame.readUInt16BE(14);
      break;
    case LINKTYPE_LINUX_SLL2:
      if (frame.length < 20) return undefined;
      offset = 20;
      etherType = frame.readUInt16BE(0);
      break;
    case LINKTYPE_RAW: {
      const version = (frame[0] ?? 0) >> 4;
      return version === 4 || version === 6 ? { offset: 0, version } : undefined;
    }
    default:
      return undefined;
  }
  if (etherType === ETHERTYPE_IPV4) return { offset, version: 4 };
  if (etherType === ETHERTYPE_IPV6) return { offset, version: 6 };
  return undefined;
}

function decodeIpv4(data: Buffer): { header: IpHeader; payload: Buffer } | undefined {
  if (data.length < 20 || data[0]! >> 4 !== 4) {
    return undefined;
  }
  const headerBytes = (data[0]! & 0x0f) * 4;
  const totalLength = data.readUInt16BE(2);
  // The total length excludes Ethernet padding, which short frames carry.
  const end = Math.min(totalLength, data.length);
  if (headerBytes < 20 || end < headerBytes) {
    return undefined;
  }
  const header: IpHeader = {
    version: 4,
    src: [...data.subarray(12, 16)].join("."),
    dst: [...data.subarray(16, 20)].join("."),
    protocol: data[9]!,
    ttl: data[8]!,
  };
  return { header, payload: data.subarray(headerBytes, end) };
}

// NOTE: extension headers are not walked, so `protocol` is the first next-header value.
function decodeIpv6(data: Buffer): { header: IpHeader; payload: Buffer } | undefined {
  if (data.length < 40 || data[0]! >> 4 !== 6) {
    return undefined;
  }
  const end = Math.min(40 + data.readUInt16BE(4), data.length);
  const header: IpHeader = {
    version: 6,
    src: formatIpv6(data.subarray(8, 24)),
    dst: formatIpv6(data.subarray(24, 40)),
    protocol: data[6]!,
    ttl: data[7]!,
  };
  return { header, payload: data.subarray(40, end) };
}

function decodeTransport(packet: DecodedPacket, ipPayload: Buffer): void {
  const protocol = packet.ip?.protocol;
  if (protocol === PROTOCOL_UDP && ipPayload.length >= 8) {
    packet.transport = { kind: "udp", srcPort: ipPayload.readUInt16BE(0), dstPort: ipPayload.readUInt16BE(2) };
    packet.payload = ipPayload.subarray(8);
  } else if (protocol === PROTOCOL_TCP && ipPayload.length >= 20) {
    const headerBytes = (ipPayload[12]! >> 4) * 4;
    packet.transport = { kind: "tcp", srcPort: ipPayload.readUInt16BE(0), dstPort: ipPayload.readUInt16BE(2) };
    packet.payload = ipPayload.subarray(Math.min(headerBytes, ipPayload.length));
  } else if ((protocol === PROTOCOL_ICMP || protocol === PROTOCOL_ICMPV6) && ipPayload.length >= 8) {
    packet.transport = { kind: protocol === PROTOCOL_ICMP ? "icmp" : "icmpv6", srcPort: 0, dstPort: 0 };
    packet.payload = ipPayload.subarray(8);
  }
}

/** Formats 16 bytes as an IPv6 address in the RFC 5952 text form (longest zero run compressed). */
export function formatIpv6(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(bytes.readUInt16BE(i));
  }
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j += 1;
    // RFC 5952 section 4.2.2: a single zero group is not compressed.
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) {
    return hex.join(":");
  }
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}
