// The DHCP options area (RFC 2132 section 2): a sequence of code, length,
// value triples, with the one-byte pad (0) and end (255) options that carry
// no length octet.
import { bytesToIPv4, ipv4ToBytes } from "../../protocol/endpoint.js";
import {
  OPTION_BROADCAST_ADDRESS,
  OPTION_CLIENT_IDENTIFIER,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_DOMAIN_NAME,
  OPTION_DOMAIN_NAME_SERVER,
  OPTION_END,
  OPTION_HOST_NAME,
  OPTION_INTERFACE_MTU,
  OPTION_IP_ADDRESS_LEASE_TIME,
  OPTION_MAXIMUM_DHCP_MESSAGE_SIZE,
  OPTION_OVERLOAD,
  OPTION_PAD,
  OPTION_PARAMETER_REQUEST_LIST,
  OPTION_REBINDING_TIME_VALUE,
  OPTION_RENEWAL_TIME_VALUE,
  OPTION_REQUESTED_IP_ADDRESS,
  OPTION_ROUTER,
  OPTION_SERVER_IDENTIFIER,
  OPTION_SUBNET_MASK,
} from "./constants.js";

/** Option values by code. The value of a code that occurs more than once is the concatenation of its instances (RFC 3396). */
export type DhcpOptions = Map<number, Buffer>;

/** Reason code of a rejected datagram, used in the counter name dhcp.drop.<reason>. */
export type DecodeDropReason =
  | "short" // shorter than the fixed header and the magic cookie
  | "oversized" // longer than one Ethernet frame can carry
  | "bad_cookie" // the options field does not start with 99.130.83.99
  | "truncated_option" // an option's length runs past the end of its field
  | "no_end_option" // a field of options that the end option does not close
  | "bad_overload" // option 52 outside 1..3
  | "bad_option_length"; // a known option with a length its definition forbids

export interface DecodeFailure {
  reason: DecodeDropReason;
  /** Human-readable detail for the log, never for a counter name. */
  detail: string;
}

/** One option to encode. Values longer than 255 bytes are split into several instances (RFC 3396). */
export interface OptionEntry {
  code: number;
  value: Buffer;
}

/**
 * Parses one field holding options into `into`. `field` names the field in
 * failure details. Bytes after the end option are ignored, where RFC 2131
 * requires pad options, because some clients leave other bytes there.
 *
 * NOTE: the end option is required in every field, which is stricter than
 * RFC 2131 section 4.1: it requires the end option in file and sname, and in
 * the options field only when option 52 is present. busybox udhcpc and ISC
 * dhclient always send it, and requiring it rejects a datagram that was cut
 * at an option boundary.
 */
export function parseOptionsField(area: Buffer, into: DhcpOptions, field: string): DecodeFailure | null {
  let i = 0;
  while (i < area.length) {
    const code = area[i] as number;
    if (code === OPTION_PAD) {
      i += 1;
      continue;
    }
    if (code === OPTION_END) return null;
    if (i + 1 >= area.length) {
      return { reason: "truncated_option", detail: `option ${code} in ${field} has no length octet` };
    }
    const length = area[i + 1] as number;
    const start = i + 2;
    if (start + length > area.length) {
      return { reason: "truncated_option", detail: `option ${code} in ${field} needs ${length} bytes, ${area.length - start} remain` };
    }
    const value = area.subarray(start, start + length);
    const earlier = into.get(code);
    into.set(code, earlier ? Buffer.concat([earlier, value]) : Buffer.from(value));
    i = start + length;
  }
  return { reason: "no_end_option", detail: `${field} ends without the end option` };
}

interface LengthRule {
  min: number;
  max: number;
  multipleOf: number;
}

function fixed(bytes: number): LengthRule {
  return { min: bytes, max: bytes, multipleOf: 1 };
}

// Lengths from the option definitions in RFC 2132 for every option this
// server reads or sends, so the typed readers below can trust the length.
const LENGTH_RULES = new Map<number, LengthRule>([
  [OPTION_SUBNET_MASK, fixed(4)],
  [OPTION_ROUTER, { min: 4, max: 255 * 4, multipleOf: 4 }],
  [OPTION_DOMAIN_NAME_SERVER, { min: 4, max: 255 * 4, multipleOf: 4 }],
  [OPTION_HOST_NAME, { min: 1, max: Infinity, multipleOf: 1 }],
  [OPTION_DOMAIN_NAME, { min: 1, max: Infinity, multipleOf: 1 }],
  [OPTION_INTERFACE_MTU, fixed(2)],
  [OPTION_BROADCAST_ADDRESS, fixed(4)],
  [OPTION_REQUESTED_IP_ADDRESS, fixed(4)],
  [OPTION_IP_ADDRESS_LEASE_TIME, fixed(4)],
  [OPTION_OVERLOAD, fixed(1)],
  [OPTION_DHCP_MESSAGE_TYPE, fixed(1)],
  [OPTION_SERVER_IDENTIFIER, fixed(4)],
  [OPTION_PARAMETER_REQUEST_LIST, { min: 1, max: Infinity, multipleOf: 1 }],
  [OPTION_MAXIMUM_DHCP_MESSAGE_SIZE, fixed(2)],
  [OPTION_RENEWAL_TIME_VALUE, fixed(4)],
  [OPTION_REBINDING_TIME_VALUE, fixed(4)],
  [OPTION_CLIENT_IDENTIFIER, { min: 2, max: Infinity, multipleOf: 1 }],
]);

/** Checks the length of every known option. Unknown options are kept without a check. */
export function checkOptionLengths(options: DhcpOptions): DecodeFailure | null {
  for (const [code, value] of options) {
    const rule = LENGTH_RULES.get(code);
    if (!rule) continue;
    if (value.length < rule.min || value.length > rule.max || value.length % rule.multipleOf !== 0) {
      return { reason: "bad_option_length", detail: `option ${code} has length ${value.length}` };
    }
  }
  return null;
}

export function readU8Option(options: DhcpOptions, code: number): number | undefined {
  const value = options.get(code);
  return value?.length === 1 ? value.readUInt8(0) : undefined;
}

export function readU16Option(options: DhcpOptions, code: number): number | undefined {
  const value = options.get(code);
  return value?.length === 2 ? value.readUInt16BE(0) : undefined;
}

export function readU32Option(options: DhcpOptions, code: number): number | undefined {
  const value = options.get(code);
  return value?.length === 4 ? value.readUInt32BE(0) : undefined;
}

export function readIPv4Option(options: DhcpOptions, code: number): string | undefined {
  const value = options.get(code);
  return value?.length === 4 ? bytesToIPv4(value) : undefined;
}

export function readIPv4ListOption(options: DhcpOptions, code: number): string[] | undefined {
  const value = options.get(code);
  if (!value || value.length === 0 || value.length % 4 !== 0) return undefined;
  const addresses: string[] = [];
  for (let offset = 0; offset < value.length; offset += 4) addresses.push(bytesToIPv4(value.subarray(offset, offset + 4)));
  return addresses;
}

/** Returns the option codes of option 55 in the client's order of preference, without duplicates, pad or end. */
export function readParameterRequestList(options: DhcpOptions): number[] {
  const value = options.get(OPTION_PARAMETER_REQUEST_LIST);
  if (!value) return [];
  const codes: number[] = [];
  for (const code of value) {
    if (code !== OPTION_PAD && code !== OPTION_END && !codes.includes(code)) codes.push(code);
  }
  return codes;
}

export function ipv4Value(address: string): Buffer {
  return ipv4ToBytes(address);
}

export function ipv4ListValue(addresses: readonly string[]): Buffer {
  return Buffer.concat(addresses.map((address) => ipv4ToBytes(address)));
}

export function u8Value(value: number): Buffer {
  const buf = Buffer.alloc(1);
  buf.writeUInt8(value);
  return buf;
}

export function u16Value(value: number): Buffer {
  const buf = Buffer.alloc(2);
  buf.writeUInt16BE(value);
  return buf;
}

export function u32Value(value: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(value >>> 0);
  return buf;
}

/** NVT ASCII text as RFC 2132 defines for names; the value carries no trailing NUL. */
export function textValue(text: string): Buffer {
  return Buffer.from(text, "latin1");
}

/** Returns the encoded size of `entry`: two header bytes per instance of at most 255 value bytes. */
export function encodedOptionBytes(entry: OptionEntry): number {
  const instances = Math.max(1, Math.ceil(entry.value.length / 255));
  return entry.value.length + 2 * instances;
}

/** Encodes `entries` in order, without the end option. */
export function encodeOptions(entries: readonly OptionEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const { code, value } of entries) {
    if (code === OPTION_PAD || code === OPTION_END || !Number.isInteger(code) || code < 0 || code > 255) {
      throw new RangeError(`option code ${code} cannot carry a value: use 1 to 254`);
    }
    let offset = 0;
    do {
      const chunk = value.subarray(offset, offset + 255);
      parts.push(Buffer.from([code, chunk.length]), chunk);
      offset += 255;
    } while (offset < value.length);
  }
  return Buffer.concat(parts);
}
