// UDP endpoints (address family, address, port) and their wire encoding:
//   family u8 (4 or 6) | address (4 or 16 bytes) | port u16
import net from "node:net";
import { Reader, Writer } from "./codec.js";
import { ProtocolError } from "./errors.js";

export interface Endpoint {
  address: string;
  port: number;
}

/** Upper bound of endpoints in one list: a host rarely has more addresses worth trying. */
export const MAX_ENDPOINTS = 16;

export function endpointFamily(e: Endpoint): 4 | 6 {
  return net.isIPv6(e.address) ? 6 : 4;
}

export function formatEndpoint(e: Endpoint): string {
  return endpointFamily(e) === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Parses "1.2.3.4:5" or "[::1]:5"; throws a RangeError naming the text when invalid. */
export function parseEndpoint(text: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const address = m?.[1];
  const port = Number(m?.[2]);
  if (!address || !net.isIP(address) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`invalid endpoint "${text}": expected ADDRESS:PORT or [IPv6]:PORT`);
  }
  return { address, port };
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.port === b.port && a.address === b.address;
}

/** Strips the IPv4-mapped prefix that dual-stack sockets report ("::ffff:1.2.3.4"). */
export function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

export function writeEndpoint(w: Writer, e: Endpoint): void {
  const family = endpointFamily(e);
  w.u8(family);
  w.raw(family === 4 ? ipv4ToBytes(e.address) : ipv6ToBytes(e.address));
  w.u16(e.port);
}

export function readEndpoint(r: Reader): Endpoint {
  const family = r.u8("endpoint family");
  let address: string;
  if (family === 4) address = bytesToIPv4(r.fixed(4, "IPv4 address"));
  else if (family === 6) address = bytesToIPv6(r.fixed(16, "IPv6 address"));
  else throw new ProtocolError("bad_field", `endpoint family ${family}`);
  const port = r.u16("endpoint port");
  if (port === 0) throw new ProtocolError("bad_field", "endpoint port 0");
  return { address, port };
}

export function writeEndpoints(w: Writer, list: Endpoint[]): void {
  if (list.length > MAX_ENDPOINTS) throw new RangeError(`${list.length} endpoints exceed ${MAX_ENDPOINTS}`);
  w.u8(list.length);
  for (const e of list) writeEndpoint(w, e);
}

export function readEndpoints(r: Reader): Endpoint[] {
  const n = r.u8("endpoint count");
  if (n > MAX_ENDPOINTS) throw new ProtocolError("bad_field", `${n} endpoints exceed ${MAX_ENDPOINTS}`);
  const list: Endpoint[] = [];
  for (let i = 0; i < n; i++) list.push(readEndpoint(r));
  return list;
}

export function ipv4ToBytes(address: string): Buffer {
  if (!net.isIPv4(address)) throw new RangeError(`invalid IPv4 address "${address}"`);
  return Buffer.from(address.split(".").map(Number));
}

export function bytesToIPv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

export function ipv4ToNumber(address: string): number {
  return ipv4ToBytes(address).readUInt32BE(0);
}

export function ipv6ToBytes(address: string): Buffer {
  if (!net.isIPv6(address)) throw new RangeError(`invalid IPv6 address "${address}"`);
  // Rewrite a trailing dotted quad ("::ffff:1.2.3.4") as two hex groups, then expand "::".
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const headGroups = head ? head.split(":") : [];
  const tailGroups = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : new Array(8 - headGroups.length - tailGroups.length).fill("0");
  const groups = [...headGroups, ...fill, ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function bytesToIPv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new net.SocketAddress({ address: groups.join(":"), family: "ipv6" }).address;
}

/**
 * True for an address a peer could send to: not unspecified, loopback,
 * multicast, broadcast or link-local (a link-local address needs a zone that
 * means nothing on another host).
 */
export function isRoutableUnicast(address: string): boolean {
  if (net.isIPv4(address)) {
    const [a, b] = address.split(".").map(Number) as [number, number];
    return !(a === 0 || a === 127 || a >= 224 || (a === 169 && b === 254));
  }
  if (!net.isIPv6(address)) return false;
  const lower = address.toLowerCase();
  return !(lower === "::" || lower === "::1" || lower.startsWith("ff") || /^fe[89ab]/.test(lower));
}
