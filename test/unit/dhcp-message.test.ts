import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import {
  DHCPDISCOVER,
  DHCPREQUEST,
  FIXED_HEADER_BYTES,
  MAGIC_COOKIE_BYTES,
  MAX_MESSAGE_BYTES,
  MIN_BOOTP_MESSAGE_BYTES,
  OPTION_CLIENT_IDENTIFIER,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_DOMAIN_NAME,
  OPTION_END,
  OPTION_HOST_NAME,
  OPTION_OVERLOAD,
  OPTION_PAD,
  OPTION_PARAMETER_REQUEST_LIST,
  OPTION_REQUESTED_IP_ADDRESS,
} from "../../firmware/src/adapter/dhcp/constants.js";
import { decodeMessage, type DecodeResult } from "../../firmware/src/adapter/dhcp/message.js";
import { ipv4Value, readIPv4Option, readU8Option, textValue } from "../../firmware/src/adapter/dhcp/options.js";
import { clientMessage, KNOWN_MAC, macBytes } from "./dhcp-support.js";

const OPTIONS_OFFSET = FIXED_HEADER_BYTES + MAGIC_COOKIE_BYTES;
const SNAME_OFFSET = 44;
const FILE_OFFSET = 108;
const KNOWN_REASONS = new Set(["short", "oversized", "bad_cookie", "truncated_option", "no_end_option", "bad_overload", "bad_option_length"]);

function decodeOk(datagram: Buffer) {
  const result = decodeMessage(datagram);
  assert.ok(result.ok, result.ok ? "" : `${result.failure.reason}: ${result.failure.detail}`);
  return result.message;
}

function failureReason(result: DecodeResult): string {
  assert.equal(result.ok, false, "expected the decoder to reject the datagram");
  return result.ok ? "" : result.failure.reason;
}

/** Builds a message whose options field contains exactly `optionBytes` after the cookie. */
function withOptionsField(optionBytes: number[], sname?: Buffer, file?: Buffer): Buffer {
  const base = clientMessage({ type: DHCPDISCOVER }).subarray(0, OPTIONS_OFFSET);
  const datagram = Buffer.concat([base, Buffer.from(optionBytes)]);
  if (sname) sname.copy(datagram, SNAME_OFFSET);
  if (file) file.copy(datagram, FILE_OFFSET);
  return datagram;
}

test("message round trip keeps header fields", () => {
  const datagram = clientMessage({
    type: DHCPREQUEST,
    xid: 0xdeadbeef,
    ciaddr: "100.64.0.7",
    flags: 0x8000,
    requestedAddress: "100.64.0.8",
    options: [{ code: OPTION_HOST_NAME, value: textValue("sensor") }],
  });
  const message = decodeOk(datagram);
  assert.equal(message.op, 1);
  assert.equal(message.htype, 1);
  assert.equal(message.hlen, 6);
  assert.equal(message.xid, 0xdeadbeef);
  assert.equal(message.flags, 0x8000);
  assert.equal(message.ciaddr, "100.64.0.7");
  assert.equal(message.yiaddr, "0.0.0.0");
  assert.equal(message.giaddr, "0.0.0.0");
  assert.deepEqual(message.chaddr.subarray(0, 6), macBytes(KNOWN_MAC));
  assert.deepEqual(message.chaddr.subarray(6), Buffer.alloc(10));
  assert.equal(readU8Option(message.options, OPTION_DHCP_MESSAGE_TYPE), DHCPREQUEST);
  assert.equal(readIPv4Option(message.options, OPTION_REQUESTED_IP_ADDRESS), "100.64.0.8");
  assert.equal(message.options.get(OPTION_HOST_NAME)?.toString(), "sensor");
});

test("encoder pads to 300 bytes", () => {
  const datagram = clientMessage({ type: DHCPDISCOVER });
  assert.equal(datagram.length, MIN_BOOTP_MESSAGE_BYTES);
  assert.equal(datagram[OPTIONS_OFFSET + 3], OPTION_END, "end option follows option 53");
  assert.ok(datagram.subarray(OPTIONS_OFFSET + 4).every((byte) => byte === OPTION_PAD));
});

test("decoder rejects every truncation", () => {
  const datagram = clientMessage({
    type: DHCPREQUEST,
    requestedAddress: "100.64.0.7",
    options: [{ code: OPTION_CLIENT_IDENTIFIER, value: Buffer.from("01020000000007", "hex") }],
  });
  // Everything after the end option is padding, so the meaningful end is there.
  const endIndex = datagram.indexOf(OPTION_END, OPTIONS_OFFSET);
  for (let length = 0; length <= endIndex; length++) {
    const reason = failureReason(decodeMessage(datagram.subarray(0, length)));
    const expected = length < OPTIONS_OFFSET ? "short" : ["truncated_option", "no_end_option"];
    if (typeof expected === "string") assert.equal(reason, expected, `length ${length}`);
    else assert.ok(expected.includes(reason), `length ${length} gave ${reason}`);
  }
  assert.equal(decodeMessage(datagram.subarray(0, endIndex + 1)).ok, true);
});

test("decoder rejects oversized datagram", () => {
  const datagram = Buffer.concat([clientMessage({ type: DHCPDISCOVER }), Buffer.alloc(MAX_MESSAGE_BYTES)]).subarray(0, MAX_MESSAGE_BYTES + 1);
  assert.equal(failureReason(decodeMessage(datagram)), "oversized");
  assert.equal(decodeMessage(datagram.subarray(0, MAX_MESSAGE_BYTES)).ok, true);
});

test("decoder rejects wrong magic cookie", () => {
  const datagram = clientMessage({ type: DHCPDISCOVER });
  datagram[FIXED_HEADER_BYTES] = 0x64;
  assert.equal(failureReason(decodeMessage(datagram)), "bad_cookie");
});

test("decoder rejects options without end", () => {
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1]))), "no_end_option");
  assert.equal(failureReason(decodeMessage(withOptionsField([]))), "no_end_option");
});

test("decoder rejects option past its field", () => {
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, 12, 10, 0x41]))), "truncated_option");
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE]))), "truncated_option");
});

test("decoder skips pad and ignores bytes after end", () => {
  const message = decodeOk(withOptionsField([OPTION_PAD, OPTION_PAD, OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_PAD, OPTION_END, 0x41, 0x42]));
  assert.equal(readU8Option(message.options, OPTION_DHCP_MESSAGE_TYPE), 1);
  assert.deepEqual([...message.options.keys()], [OPTION_DHCP_MESSAGE_TYPE]);
});

test("decoder concatenates repeated options", () => {
  // RFC 3396: a long option is split into instances that the receiver joins.
  const message = decodeOk(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_DOMAIN_NAME, 3, 0x61, 0x62, 0x63, OPTION_DOMAIN_NAME, 2, 0x64, 0x65, OPTION_END]));
  assert.equal(message.options.get(OPTION_DOMAIN_NAME)?.toString(), "abcde");
});

test("decoder rejects wrong option lengths", () => {
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 2, 1, 1, OPTION_END]))), "bad_option_length");
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_REQUESTED_IP_ADDRESS, 3, 1, 2, 3, OPTION_END]))), "bad_option_length");
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_PARAMETER_REQUEST_LIST, 0, OPTION_END]))), "bad_option_length");
});

test("overload 1 reads options from file", () => {
  const file = Buffer.from([OPTION_REQUESTED_IP_ADDRESS, 4, ...ipv4Value("100.64.0.7"), OPTION_END]);
  const message = decodeOk(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 3, OPTION_OVERLOAD, 1, 1, OPTION_END], undefined, file));
  assert.equal(readIPv4Option(message.options, OPTION_REQUESTED_IP_ADDRESS), "100.64.0.7");
});

test("overload 2 reads options from sname", () => {
  const sname = Buffer.from([OPTION_HOST_NAME, 2, 0x68, 0x69, OPTION_END]);
  const message = decodeOk(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_OVERLOAD, 1, 2, OPTION_END], sname));
  assert.equal(message.options.get(OPTION_HOST_NAME)?.toString(), "hi");
});

test("overload 3 joins file before sname", () => {
  // RFC 2131 section 4.1: options field, then file, then sname.
  const file = Buffer.from([OPTION_HOST_NAME, 2, 0x61, 0x62, OPTION_END]);
  const sname = Buffer.from([OPTION_HOST_NAME, 2, 0x63, 0x64, OPTION_END]);
  const message = decodeOk(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_OVERLOAD, 1, 3, OPTION_END], sname, file));
  assert.equal(message.options.get(OPTION_HOST_NAME)?.toString(), "abcd");
});

test("overload without end in field is rejected", () => {
  const file = Buffer.alloc(128, 0);
  file[0] = OPTION_HOST_NAME;
  file[1] = 126;
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_OVERLOAD, 1, 1, OPTION_END], undefined, file))), "no_end_option");
});

test("overload value outside 1..3 is rejected", () => {
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_OVERLOAD, 1, 4, OPTION_END]))), "bad_overload");
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_OVERLOAD, 1, 0, OPTION_END]))), "bad_overload");
});

test("option 52 inside file is rejected", () => {
  const file = Buffer.from([OPTION_OVERLOAD, 1, 3, OPTION_END]);
  assert.equal(failureReason(decodeMessage(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_OVERLOAD, 1, 1, OPTION_END], undefined, file))), "bad_option_length");
});

test("sname and file are plain fields without overload", () => {
  const file = Buffer.from([OPTION_HOST_NAME, 200]);
  const message = decodeOk(withOptionsField([OPTION_DHCP_MESSAGE_TYPE, 1, 1, OPTION_END], undefined, file));
  assert.equal(message.options.has(OPTION_HOST_NAME), false);
  assert.equal(message.file[1], 200);
});

test("fuzz random buffers never throw", () => {
  for (let i = 0; i < 20_000; i++) {
    const datagram = randomBytes(randomInt(0, 1600));
    // Half of them get a valid cookie, so the options parser gets random bytes too.
    if (i % 2 === 0 && datagram.length >= OPTIONS_OFFSET) datagram.writeUInt32BE(0x63825363, FIXED_HEADER_BYTES);
    const result = decodeMessage(datagram);
    if (!result.ok) assert.ok(KNOWN_REASONS.has(result.failure.reason), result.failure.reason);
  }
});

test("fuzz mutated messages never throw", () => {
  const valid = clientMessage({
    type: DHCPREQUEST,
    requestedAddress: "100.64.0.7",
    serverIdentifier: "100.64.0.3",
    options: [{ code: OPTION_PARAMETER_REQUEST_LIST, value: Buffer.from([1, 3, 6, 15, 26]) }],
  });
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    const datagram = Buffer.from(valid);
    const flips = randomInt(1, 8);
    for (let j = 0; j < flips; j++) datagram[randomInt(OPTIONS_OFFSET - 4, datagram.length)] = randomInt(0, 256);
    const cut = i % 3 === 0 ? randomInt(0, datagram.length) : datagram.length;
    const result = decodeMessage(datagram.subarray(0, cut));
    if (result.ok) accepted++;
    else assert.ok(KNOWN_REASONS.has(result.failure.reason), result.failure.reason);
  }
  // Mutations in the padding keep the message valid, so some must pass.
  assert.ok(accepted > 0, "no mutated message decoded");
});
