// The DHCP message format (RFC 2131 section 2): the 236-byte BOOTP header,
// the magic cookie and the options, with option overload (RFC 2132 section
// 9.3) read from the file and sname fields.
import { Reader, Writer } from "../../protocol/codec.js";
import { bytesToIPv4, ipv4ToBytes } from "../../protocol/endpoint.js";
import { ProtocolError } from "../../protocol/errors.js";
import {
  CHADDR_BYTES,
  FILE_BYTES,
  FIXED_HEADER_BYTES,
  MAGIC_COOKIE,
  MAGIC_COOKIE_BYTES,
  MAX_MESSAGE_BYTES,
  MIN_BOOTP_MESSAGE_BYTES,
  OPTION_END,
  OPTION_OVERLOAD,
  OVERLOAD_BOTH,
  OVERLOAD_FILE,
  OVERLOAD_SNAME,
  SNAME_BYTES,
} from "./constants.js";
import {
  checkOptionLengths,
  encodeOptions,
  parseOptionsField,
  readU8Option,
  type DecodeFailure,
  type DhcpOptions,
  type OptionEntry,
} from "./options.js";

/** The fixed header fields, named as in RFC 2131 section 2, with addresses as dotted quads. */
export interface DhcpHeader {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** Client hardware address, 16 bytes, of which the first hlen are the address. */
  chaddr: Buffer;
  /** 64 bytes: a server host name, or options when option 52 includes sname. */
  sname: Buffer;
  /** 128 bytes: a boot file name, or options when option 52 includes file. */
  file: Buffer;
}

export interface DhcpMessage extends DhcpHeader {
  options: DhcpOptions;
}

export type DecodeResult = { ok: true; message: DhcpMessage } | { ok: false; failure: DecodeFailure };

/**
 * Decodes one UDP payload. Returns a failure for input that is not a
 * well-formed DHCP message; the fuzz tests in dhcp-message.test.ts check that
 * it does not throw. It checks structure only, so the receiver checks op,
 * htype and the message type.
 */
export function decodeMessage(datagram: Buffer): DecodeResult {
  if (datagram.length > MAX_MESSAGE_BYTES) {
    return fail("oversized", `${datagram.length} bytes exceed ${MAX_MESSAGE_BYTES}`);
  }
  let header: DhcpHeader;
  let cookie: number;
  let optionsField: Buffer;
  try {
    const reader = new Reader(datagram);
    header = readHeader(reader);
    cookie = reader.u32("magic cookie");
    optionsField = reader.rest();
  } catch (err) {
    if (err instanceof ProtocolError) return fail("short", err.message);
    throw err;
  }
  if (cookie !== MAGIC_COOKIE) {
    return fail("bad_cookie", `magic cookie 0x${cookie.toString(16)} is not 0x${MAGIC_COOKIE.toString(16)}`);
  }

  const options: DhcpOptions = new Map();
  const failure = parseOptionsField(optionsField, options, "options") ?? parseOverloadedFields(header, options) ?? checkOptionLengths(options);
  if (failure) return { ok: false, failure };
  return { ok: true, message: { ...header, options } };
}

function readHeader(reader: Reader): DhcpHeader {
  return {
    op: reader.u8("op"),
    htype: reader.u8("htype"),
    hlen: reader.u8("hlen"),
    hops: reader.u8("hops"),
    xid: reader.u32("xid"),
    secs: reader.u16("secs"),
    flags: reader.u16("flags"),
    ciaddr: bytesToIPv4(reader.fixed(4, "ciaddr")),
    yiaddr: bytesToIPv4(reader.fixed(4, "yiaddr")),
    siaddr: bytesToIPv4(reader.fixed(4, "siaddr")),
    giaddr: bytesToIPv4(reader.fixed(4, "giaddr")),
    chaddr: reader.fixed(CHADDR_BYTES, "chaddr"),
    sname: reader.fixed(SNAME_BYTES, "sname"),
    file: reader.fixed(FILE_BYTES, "file"),
  };
}

/**
 * Reads options from file and then sname when option 52 names them, in the
 * order of RFC 2131 section 4.1. Each such field must end
 * with the end option. Option 52 is only valid in the options field, so a copy
 * in file or sname makes its concatenated length invalid and the message is
 * rejected by the length check.
 */
function parseOverloadedFields(header: DhcpHeader, options: DhcpOptions): DecodeFailure | null {
  if (!options.has(OPTION_OVERLOAD)) return null;
  const overload = readU8Option(options, OPTION_OVERLOAD);
  if (overload !== OVERLOAD_FILE && overload !== OVERLOAD_SNAME && overload !== OVERLOAD_BOTH) {
    const value = options.get(OPTION_OVERLOAD)?.toString("hex");
    return { reason: "bad_overload", detail: `option 52 value 0x${value} is not 1, 2 or 3` };
  }
  if (overload === OVERLOAD_FILE || overload === OVERLOAD_BOTH) {
    const failure = parseOptionsField(header.file, options, "file");
    if (failure) return failure;
  }
  if (overload === OVERLOAD_SNAME || overload === OVERLOAD_BOTH) {
    const failure = parseOptionsField(header.sname, options, "sname");
    if (failure) return failure;
  }
  return null;
}

function fail(reason: DecodeFailure["reason"], detail: string): DecodeResult {
  return { ok: false, failure: { reason, detail } };
}

/**
 * Encodes a message with `options` in the given order, then the end option,
 * padded with pad options to the 300-byte BOOTP size. sname and file
 * shorter than their fields are zero-filled. Throws RangeError for a field
 * that does not fit; the caller keeps the size within the client's limit.
 */
export function encodeMessage(header: DhcpHeader, options: readonly OptionEntry[]): Buffer {
  const writer = new Writer()
    .u8(header.op)
    .u8(header.htype)
    .u8(header.hlen)
    .u8(header.hops)
    .u32(header.xid)
    .u16(header.secs)
    .u16(header.flags)
    .fixed(ipv4ToBytes(header.ciaddr), 4)
    .fixed(ipv4ToBytes(header.yiaddr), 4)
    .fixed(ipv4ToBytes(header.siaddr), 4)
    .fixed(ipv4ToBytes(header.giaddr), 4)
    .fixed(zeroFilled(header.chaddr, CHADDR_BYTES, "chaddr"), CHADDR_BYTES)
    .fixed(zeroFilled(header.sname, SNAME_BYTES, "sname"), SNAME_BYTES)
    .fixed(zeroFilled(header.file, FILE_BYTES, "file"), FILE_BYTES)
    .u32(MAGIC_COOKIE)
    .raw(encodeOptions(options))
    .u8(OPTION_END);
  const message = writer.finish();
  if (message.length >= MIN_BOOTP_MESSAGE_BYTES) return message;
  // The pad option is a zero byte, so zero fill pads the options field.
  return Buffer.concat([message, Buffer.alloc(MIN_BOOTP_MESSAGE_BYTES - message.length)]);
}

function zeroFilled(value: Buffer, bytes: number, field: string): Buffer {
  if (value.length > bytes) throw new RangeError(`${field} of ${value.length} bytes exceeds its ${bytes}-byte field`);
  if (value.length === bytes) return value;
  return Buffer.concat([value, Buffer.alloc(bytes - value.length)]);
}

/** Size of a message without options: header, cookie and end option. */
export const EMPTY_MESSAGE_BYTES = FIXED_HEADER_BYTES + MAGIC_COOKIE_BYTES + 1;
