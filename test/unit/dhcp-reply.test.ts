import { test } from "node:test";
import assert from "node:assert/strict";
import type { ReplyConfig } from "../../firmware/src/adapter/dhcp/config.js";
import {
  DHCPACK,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPREQUEST,
  MIN_MAX_MESSAGE_BYTES,
  OPTION_BROADCAST_ADDRESS,
  OPTION_CLIENT_IDENTIFIER,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_DOMAIN_NAME,
  OPTION_DOMAIN_NAME_SERVER,
  OPTION_HOST_NAME,
  OPTION_INTERFACE_MTU,
  OPTION_IP_ADDRESS_LEASE_TIME,
  OPTION_MAXIMUM_DHCP_MESSAGE_SIZE,
  OPTION_MESSAGE,
  OPTION_PARAMETER_REQUEST_LIST,
  OPTION_REBINDING_TIME_VALUE,
  OPTION_RENEWAL_TIME_VALUE,
  OPTION_ROUTER,
  OPTION_SERVER_IDENTIFIER,
  OPTION_SUBNET_MASK,
} from "../../firmware/src/adapter/dhcp/constants.js";
import { decodeMessage, type DhcpMessage } from "../../firmware/src/adapter/dhcp/message.js";
import {
  readIPv4ListOption,
  readIPv4Option,
  readU16Option,
  readU32Option,
  readU8Option,
  u16Value,
  type OptionEntry,
} from "../../firmware/src/adapter/dhcp/options.js";
import { buildReply, maxReplyBytes, type ReplyKind } from "../../firmware/src/adapter/dhcp/reply.js";
import { clientMessage, KNOWN_ADDRESS, KNOWN_MAC, macBytes, SERVER_ADDRESS, type ClientMessageFields } from "./dhcp-support.js";

const CONFIG: ReplyConfig = {
  serverAddress: SERVER_ADDRESS,
  subnetMask: "255.255.0.0",
  router: SERVER_ADDRESS,
  dnsServers: [SERVER_ADDRESS, "100.64.0.4"],
  domainName: "cyphonic.internal",
  mtuBytes: 1420,
  leaseSeconds: 3600,
  clientPort: 68,
};

function request(fields: ClientMessageFields): DhcpMessage {
  const decoded = decodeMessage(clientMessage(fields));
  assert.ok(decoded.ok);
  return decoded.message;
}

function replyTo(fields: ClientMessageFields, kind: ReplyKind, config: ReplyConfig = CONFIG) {
  const reply = buildReply(request(fields), kind, config);
  const decoded = decodeMessage(reply.data);
  assert.ok(decoded.ok, "the reply decodes");
  return { ...reply, message: decoded.message, codes: [...decoded.message.options.keys()] };
}

function prl(...codes: number[]): OptionEntry {
  return { code: OPTION_PARAMETER_REQUEST_LIST, value: Buffer.from(codes) };
}

test("offer header follows table 3", () => {
  const { message } = replyTo({ type: DHCPDISCOVER, xid: 0x01020304, flags: 0x8000 }, { type: "offer", address: KNOWN_ADDRESS });
  assert.equal(message.op, 2);
  assert.equal(message.htype, 1);
  assert.equal(message.hlen, 6);
  assert.equal(message.hops, 0);
  assert.equal(message.xid, 0x01020304);
  assert.equal(message.secs, 0);
  assert.equal(message.flags, 0x8000);
  assert.equal(message.ciaddr, "0.0.0.0");
  assert.equal(message.yiaddr, KNOWN_ADDRESS);
  assert.equal(message.siaddr, "0.0.0.0");
  assert.equal(message.giaddr, "0.0.0.0");
  assert.deepEqual(message.chaddr.subarray(0, 6), macBytes(KNOWN_MAC));
});

test("offer carries configured options", () => {
  const { message } = replyTo({ type: DHCPDISCOVER }, { type: "offer", address: KNOWN_ADDRESS });
  const o = message.options;
  assert.equal(readU8Option(o, OPTION_DHCP_MESSAGE_TYPE), DHCPOFFER);
  assert.equal(readIPv4Option(o, OPTION_SERVER_IDENTIFIER), SERVER_ADDRESS);
  assert.equal(readIPv4Option(o, OPTION_SUBNET_MASK), "255.255.0.0");
  assert.equal(readIPv4Option(o, OPTION_ROUTER), SERVER_ADDRESS);
  assert.deepEqual(readIPv4ListOption(o, OPTION_DOMAIN_NAME_SERVER), [SERVER_ADDRESS, "100.64.0.4"]);
  assert.equal(o.get(OPTION_DOMAIN_NAME)?.toString(), "cyphonic.internal");
  assert.equal(readU16Option(o, OPTION_INTERFACE_MTU), 1420);
  assert.equal(readU32Option(o, OPTION_IP_ADDRESS_LEASE_TIME), 3600);
  assert.equal(readU32Option(o, OPTION_RENEWAL_TIME_VALUE), 1800);
  assert.equal(readU32Option(o, OPTION_REBINDING_TIME_VALUE), 3150);
});

test("MTU goes to clients that do not request it", () => {
  // busybox 1.35 udhcpc requests 1, 3, 6, 12, 15, 28 and 42 by default (captured in the lab test), not 26.
  const { message } = replyTo({ type: DHCPDISCOVER, options: [prl(1, 3, 6, 12, 15, 28, 42)] }, { type: "offer", address: KNOWN_ADDRESS });
  assert.equal(readU16Option(message.options, OPTION_INTERFACE_MTU), 1420);
});

test("requested options follow option 55 order", () => {
  const { codes } = replyTo(
    { type: DHCPREQUEST, options: [prl(OPTION_INTERFACE_MTU, OPTION_DOMAIN_NAME, OPTION_ROUTER, OPTION_SUBNET_MASK)] },
    { type: "ack", address: KNOWN_ADDRESS },
  );
  assert.deepEqual(codes, [
    OPTION_DHCP_MESSAGE_TYPE,
    OPTION_SERVER_IDENTIFIER,
    OPTION_IP_ADDRESS_LEASE_TIME,
    OPTION_RENEWAL_TIME_VALUE,
    OPTION_REBINDING_TIME_VALUE,
    OPTION_INTERFACE_MTU,
    OPTION_DOMAIN_NAME,
    OPTION_ROUTER,
    OPTION_SUBNET_MASK,
    OPTION_DOMAIN_NAME_SERVER,
  ]);
});

test("host name and broadcast only on request", () => {
  const plain = replyTo({ type: DHCPDISCOVER }, { type: "offer", address: KNOWN_ADDRESS, hostname: "sensor-7" });
  assert.equal(plain.message.options.has(OPTION_HOST_NAME), false);
  assert.equal(plain.message.options.has(OPTION_BROADCAST_ADDRESS), false);
  const requested = replyTo({ type: DHCPDISCOVER, options: [prl(OPTION_HOST_NAME, OPTION_BROADCAST_ADDRESS)] }, { type: "offer", address: KNOWN_ADDRESS, hostname: "sensor-7" });
  assert.equal(requested.message.options.get(OPTION_HOST_NAME)?.toString(), "sensor-7");
  assert.equal(readIPv4Option(requested.message.options, OPTION_BROADCAST_ADDRESS), "100.64.255.255");
});

test("client identifier is echoed", () => {
  const clientIdentifier = Buffer.from("01020000000007", "hex");
  for (const kind of [{ type: "offer", address: KNOWN_ADDRESS }, { type: "nak", message: "no" }] as ReplyKind[]) {
    const { message } = replyTo({ type: DHCPREQUEST, options: [{ code: OPTION_CLIENT_IDENTIFIER, value: clientIdentifier }] }, kind);
    assert.deepEqual(message.options.get(OPTION_CLIENT_IDENTIFIER), clientIdentifier, kind.type);
  }
});

test("ack to request keeps ciaddr", () => {
  const { message, destination } = replyTo({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }, { type: "ack", address: KNOWN_ADDRESS });
  assert.equal(readU8Option(message.options, OPTION_DHCP_MESSAGE_TYPE), DHCPACK);
  assert.equal(message.ciaddr, KNOWN_ADDRESS);
  assert.equal(message.yiaddr, KNOWN_ADDRESS);
  assert.deepEqual(destination, { address: KNOWN_ADDRESS, port: 68 });
});

test("inform ack has no lease", () => {
  const { message, destination, codes } = replyTo({ type: DHCPINFORM, ciaddr: KNOWN_ADDRESS }, { type: "inform_ack" });
  assert.equal(readU8Option(message.options, OPTION_DHCP_MESSAGE_TYPE), DHCPACK);
  assert.equal(message.yiaddr, "0.0.0.0");
  assert.equal(message.ciaddr, KNOWN_ADDRESS);
  for (const code of [OPTION_IP_ADDRESS_LEASE_TIME, OPTION_RENEWAL_TIME_VALUE, OPTION_REBINDING_TIME_VALUE]) assert.ok(!codes.includes(code), `option ${code}`);
  assert.equal(readIPv4Option(message.options, OPTION_ROUTER), SERVER_ADDRESS);
  assert.deepEqual(destination, { address: KNOWN_ADDRESS, port: 68 });
});

test("nak carries only identification", () => {
  const { message, destination, codes } = replyTo({ type: DHCPREQUEST, ciaddr: "100.64.0.8" }, { type: "nak", message: "wrong address" });
  assert.equal(readU8Option(message.options, OPTION_DHCP_MESSAGE_TYPE), DHCPNAK);
  assert.deepEqual(codes, [OPTION_DHCP_MESSAGE_TYPE, OPTION_SERVER_IDENTIFIER, OPTION_MESSAGE]);
  assert.equal(message.ciaddr, "0.0.0.0");
  assert.equal(message.yiaddr, "0.0.0.0");
  assert.equal(message.options.get(OPTION_MESSAGE)?.toString(), "wrong address");
  // RFC 2131 section 4.1: NAKs are broadcast, even to a client with ciaddr.
  assert.deepEqual(destination, { address: "255.255.255.255", port: 68 });
});

test("replies without ciaddr are broadcast", () => {
  for (const flags of [0, 0x8000]) {
    const { destination } = replyTo({ type: DHCPDISCOVER, flags }, { type: "offer", address: KNOWN_ADDRESS });
    assert.deepEqual(destination, { address: "255.255.255.255", port: 68 }, `flags ${flags}`);
  }
  const custom = replyTo({ type: DHCPDISCOVER }, { type: "offer", address: KNOWN_ADDRESS }, { ...CONFIG, clientPort: 40068 });
  assert.equal(custom.destination.port, 40068);
});

test("maximum message size bounds", () => {
  assert.equal(maxReplyBytes(request({ type: DHCPDISCOVER })), MIN_MAX_MESSAGE_BYTES);
  const withSize = (size: number) => request({ type: DHCPDISCOVER, options: [{ code: OPTION_MAXIMUM_DHCP_MESSAGE_SIZE, value: u16Value(size) }] });
  // RFC 2132 section 9.10: 576 is the smallest legal value.
  assert.equal(maxReplyBytes(withSize(300)), 548);
  assert.equal(maxReplyBytes(withSize(1000)), 972);
  assert.equal(maxReplyBytes(withSize(65535)), 1472);
});

test("oversized reply drops optional options first", () => {
  const longDomain = Array.from({ length: 4 }, () => "a".repeat(60)).join(".");
  const config = { ...CONFIG, domainName: longDomain, dnsServers: Array.from({ length: 16 }, (_v, i) => `100.64.1.${i + 1}`) };
  const small = replyTo({ type: DHCPDISCOVER }, { type: "offer", address: KNOWN_ADDRESS }, config);
  assert.ok(small.data.length <= 548, `${small.data.length} bytes`);
  assert.deepEqual(small.omittedOptions, [OPTION_DOMAIN_NAME]);
  assert.equal(readU16Option(small.message.options, OPTION_INTERFACE_MTU), 1420);
  assert.equal(readIPv4ListOption(small.message.options, OPTION_DOMAIN_NAME_SERVER)?.length, 16);

  const large = replyTo(
    { type: DHCPDISCOVER, options: [{ code: OPTION_MAXIMUM_DHCP_MESSAGE_SIZE, value: u16Value(1500) }] },
    { type: "offer", address: KNOWN_ADDRESS },
    config,
  );
  assert.deepEqual(large.omittedOptions, []);
  assert.equal(large.message.options.get(OPTION_DOMAIN_NAME)?.toString(), longDomain);
  assert.ok(large.data.length > 548, `${large.data.length} bytes`);
  assert.ok(large.data.length <= 1472, `${large.data.length} bytes`);
});
