// UDP endpoints ("address:port") in one canonical text form, so that the
// address a node reports and the address the NMS observes compare equal.
import { isIP } from "node:net";
import { StoreError } from "./errors.js";

export interface Endpoint {
  address: string;
  port: number;
  family: 4 | 6;
}

// An IPv4 address seen through a dual-stack IPv6 socket (RFC 4291 section
// 2.5.5.2), after the URL parser has written its low 32 bits in hex.
const IPV4_MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * Returns an IP address in canonical form: IPv4-mapped IPv6 addresses become
 * IPv4, and IPv6 addresses take the RFC 5952 form. Raises "invalid_argument".
 */
export function normalizeAddress(address: string): { address: string; family: 4 | 6 } {
  const family = isIP(address);
  if (family === 4) return { address, family };
  if (family === 6) {
    const canonical = canonicalIpv6(address);
    const mapped = canonical === undefined ? null : IPV4_MAPPED.exec(canonical);
    if (mapped) {
      const high = parseInt(mapped[1] as string, 16);
      const low = parseInt(mapped[2] as string, 16);
      return { address: [high >> 8, high & 0xff, low >> 8, low & 0xff].join("."), family: 4 };
    }
    if (canonical !== undefined) return { address: canonical, family };
  }
  throw new StoreError("invalid_argument", `Address "${address}" is not an IPv4 or IPv6 address.`);
}

// The WHATWG URL parser serializes IPv6 hosts in RFC 5952 form. It rejects a
// zone index ("%eth0"), so scoped link-local addresses return undefined.
function canonicalIpv6(address: string): string | undefined {
  try {
    return new URL(`udp://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

export function validatePort(port: number, context: string): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new StoreError("invalid_argument", `Port ${port} of ${context} is not in the range 1 to 65535.`);
  }
  return port;
}

/** Parses "192.0.2.1:4000" or "[2001:db8::1]:4000" into a canonical endpoint. */
export function parseEndpoint(text: string): Endpoint {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) {
    throw new StoreError(
      "invalid_argument",
      `Endpoint "${text}" is invalid. Write "192.0.2.1:4000", or "[2001:db8::1]:4000" for IPv6.`,
    );
  }
  const { address, family } = normalizeAddress(match[1] ?? (match[2] as string));
  return { address, port: validatePort(Number(match[3]), `endpoint "${text}"`), family };
}

export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.family === 6 ? `[${endpoint.address}]:${endpoint.port}` : `${endpoint.address}:${endpoint.port}`;
}
