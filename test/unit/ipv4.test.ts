import { test } from "node:test";
import assert from "node:assert/strict";
import { ipv4Checksum, readIPv4Header, IP_PROTOCOL_UDP } from "../../firmware/src/protocol/ipv4.js";

// UDP datagram 192.168.0.1 -> 192.168.0.199, total length 0x73 (115 bytes),
// header checksum 0xb861 (the worked example of the IPv4 header checksum).
const HEADER_HEX = "45000073000040004011b861c0a80001c0a800c7";

function knownPacket(): Buffer {
  const packet = Buffer.alloc(0x73);
  Buffer.from(HEADER_HEX, "hex").copy(packet, 0);
  return packet;
}

function withByte(packet: Buffer, index: number, value: number): Buffer {
  packet[index] = value;
  return packet;
}

test("ipv4Checksum of known header", () => {
  const header = Buffer.from(HEADER_HEX, "hex");
  header.writeUInt16BE(0, 10);
  assert.equal(ipv4Checksum(header, 0, 20), 0xb861);
});

test("ipv4Checksum verifies to zero", () => {
  assert.equal(ipv4Checksum(Buffer.from(HEADER_HEX, "hex"), 0, 20), 0);
});

test("ipv4Checksum RFC 1071 example", () => {
  // RFC 1071 section 3 sums these bytes to 0xddf2, so the checksum is 0x220d.
  const bytes = Buffer.from("0001f203f4f5f6f7", "hex");
  assert.equal(ipv4Checksum(bytes, 0, bytes.length), 0x220d);
});

test("ipv4Checksum odd length pads zero", () => {
  assert.equal(ipv4Checksum(Buffer.from([0x01]), 0, 1), 0xfeff);
  assert.equal(ipv4Checksum(Buffer.from([0x00, 0x01, 0xf2]), 0, 3), ipv4Checksum(Buffer.from([0x00, 0x01, 0xf2, 0x00]), 0, 4));
});

test("ipv4Checksum honours offset", () => {
  const padded = Buffer.concat([Buffer.from([0xaa, 0xbb, 0xcc]), Buffer.from(HEADER_HEX, "hex")]);
  assert.equal(ipv4Checksum(padded, 3, 20), 0);
});

test("ipv4Checksum folds carries", () => {
  // 0xffff + 0xffff + 0x0002 = 0x20000, folded to 0x0002, complement 0xfffd.
  assert.equal(ipv4Checksum(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x02]), 0, 6), 0xfffd);
});

test("ipv4Checksum rejects out-of-range", () => {
  assert.throws(() => ipv4Checksum(Buffer.alloc(4), 2, 4), RangeError);
  assert.throws(() => ipv4Checksum(Buffer.alloc(4), -1, 2), RangeError);
});

test("readIPv4Header parses known packet", () => {
  const header = readIPv4Header(knownPacket());
  assert.ok(header);
  assert.equal(header.version, 4);
  assert.equal(header.headerLength, 20);
  assert.equal(header.totalLength, 0x73);
  assert.equal(header.protocol, IP_PROTOCOL_UDP);
  assert.equal(header.source, "192.168.0.1");
  assert.equal(header.destination, "192.168.0.199");
});

test("readIPv4Header reads options length", () => {
  // IHL 6: one 32-bit word of options (four NOP options) after the fixed header.
  const packet = Buffer.alloc(40);
  Buffer.from(HEADER_HEX, "hex").copy(packet, 0);
  packet[0] = 0x46;
  packet.writeUInt16BE(40, 2);
  packet.fill(0x01, 20, 24);
  const header = readIPv4Header(packet);
  assert.ok(header);
  assert.equal(header.headerLength, 24);
  assert.equal(header.totalLength, 40);
});

test("readIPv4Header allows trailing padding", () => {
  const packet = Buffer.concat([knownPacket(), Buffer.alloc(5)]);
  assert.equal(readIPv4Header(packet)?.totalLength, 0x73);
});

test("readIPv4Header rejects malformed input", () => {
  const cases: Array<[string, Buffer]> = [
    ["empty", Buffer.alloc(0)],
    ["truncated header", knownPacket().subarray(0, 19)],
    ["version 6", withByte(knownPacket(), 0, 0x65)],
    ["version 0", withByte(knownPacket(), 0, 0x05)],
    ["IHL below 5", withByte(knownPacket(), 0, 0x44)],
    ["IHL past buffer", withByte(Buffer.from(HEADER_HEX, "hex"), 0, 0x4f)],
    ["totalLength past buffer", knownPacket().subarray(0, 0x72)],
    ["totalLength below header", withByte(withByte(knownPacket(), 2, 0), 3, 19)],
  ];
  for (const [name, packet] of cases) {
    assert.equal(readIPv4Header(packet), null, name);
  }
});
