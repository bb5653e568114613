// The check between a tunnel and the local stack, shared by the dataplane
// worker and the control plane: as in WireGuard's cryptokey routing, the
// session a packet arrived on decides which source address it may carry.

export type TunnelDrop = "bad_ip_packet" | "spoofed_source" | "not_for_us";

/**
 * Returns why an IP packet that came out of the tunnel to peerAddress must
 * not be delivered to localAddress, or null when it may. Addresses are IPv4
 * as unsigned 32-bit numbers. The header checks follow RFC 791 section 3.1:
 * version 4, IHL of at least 5 words, total length within the datagram.
 */
export function tunnelPacketDrop(packet: Buffer, peerAddress: number, localAddress: number): TunnelDrop | null {
  if (packet.length < 20 || packet[0]! >> 4 !== 4) return "bad_ip_packet";
  const headerBytes = (packet[0]! & 0x0f) * 4;
  const totalBytes = packet.readUInt16BE(2);
  if (headerBytes < 20 || headerBytes > packet.length || totalBytes < headerBytes || totalBytes > packet.length) return "bad_ip_packet";
  if (packet.readUInt32BE(12) !== peerAddress >>> 0) return "spoofed_source";
  if (packet.readUInt32BE(16) !== localAddress >>> 0) return "not_for_us";
  return null;
}
