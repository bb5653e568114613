// IPv4 prefix arithmetic and MAC address parsing for the LAN setup. Every
// value that reaches an `ip` argument or an nftables ruleset passes through
// these parsers first, so no caller-supplied text is pasted into a command.
import net from "node:net";
import { parseIPv4Cidr } from "../../node/netlink-ip.js";

/** An IPv4 prefix with its network address as an unsigned 32-bit integer. */
export interface IPv4Prefix {
  networkAddress: number;
  prefixLength: number;
  /** Canonical text, for example "100.64.0.0/16". */
  cidr: string;
}

/** Returns the address as an unsigned 32-bit integer, or null unless it is a dotted-quad IPv4 address. */
export function ipv4ToUint32(address: string): number | null {
  if (!net.isIPv4(address)) return null;
  return address.split(".").reduce((value, octet) => value * 256 + Number(octet), 0);
}

function prefixMask(prefixLength: number): number {
  // A shift by 32 is a shift by 0 in JavaScript, so /32 is computed separately.
  return prefixLength === 32 ? 0xffffffff : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/**
 * Parses "a.b.c.d/n" as a network prefix. Returns null when the text is not
 * valid CIDR notation with n from 1 to 32, or when host bits are set
 * ("100.64.0.3/16" is an address, not a prefix).
 */
export function parseIPv4Prefix(text: string): IPv4Prefix | null {
  const cidr = parseIPv4Cidr(text);
  if (!cidr) return null;
  const address = ipv4ToUint32(cidr.address);
  if (address === null) return null;
  const networkAddress = (address & prefixMask(cidr.prefixLength)) >>> 0;
  if (networkAddress !== address) return null;
  return { networkAddress, prefixLength: cidr.prefixLength, cidr: `${cidr.address}/${cidr.prefixLength}` };
}

/**
 * Reports whether `address` can be a host in `prefix`: inside it and, for
 * prefixes of /30 and shorter, neither the network nor the broadcast address.
 * /31 (RFC 3021) and /32 prefixes have no reserved addresses.
 */
export function isHostInPrefix(prefix: IPv4Prefix, address: string): boolean {
  const value = ipv4ToUint32(address);
  if (value === null) return false;
  const mask = prefixMask(prefix.prefixLength);
  if (((value & mask) >>> 0) !== prefix.networkAddress) return false;
  if (prefix.prefixLength >= 31) return true;
  const broadcastAddress = (prefix.networkAddress | ~mask) >>> 0;
  return value !== prefix.networkAddress && value !== broadcastAddress;
}

const MAC_PATTERN = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;

/**
 * Parses a 48-bit MAC address written with ":" or "-" separators and returns
 * it in lower case with ":" (the form nftables and iproute2 print). Returns
 * null for other text, for 00:00:00:00:00:00 and for group addresses (the
 * I/G bit, the lowest bit of the first octet, set), because neither is a
 * valid source address of a host.
 */
export function normalizeMacAddress(text: string): string | null {
  if (!MAC_PATTERN.test(text)) return null;
  const mac = text.toLowerCase().replaceAll("-", ":");
  const firstOctet = Number.parseInt(mac.slice(0, 2), 16);
  if ((firstOctet & 0x01) !== 0) return null;
  if (mac === "00:00:00:00:00:00") return null;
  return mac;
}
