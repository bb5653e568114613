// Checks the pcap reader and frame decoder on files built byte by byte.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrame, formatIpv6, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2, packetsContaining } from "./packet.js";
import { parsePcap } from "./pcap.js";

function udpOverIpv4(src: number[], dst: number[], srcPort: number, dstPort: number, payload: string): Buffer {
  const data = Buffer.from(payload, "utf8");
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(srcPort, 0);
  udp.writeUInt16BE(dstPort, 2);
  udp.writeUInt16BE(8 + data.length, 4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + data.length, 2);
  ip[8] = 63;
  ip[9] = 17;
  Buffer.from(src).copy(ip, 12);
  Buffer.from(dst).copy(ip, 16);
  return Buffer.concat([ip, udp, data]);
}

function ethernet(etherType: number, body: Buffer): Buffer {
  const header = Buffer.alloc(14);
  header.writeUInt16BE(etherType, 12);
  return Buffer.concat([header, body]);
}

function pcapFile(records: Buffer[], options: { littleEndian: boolean; nanoseconds: boolean; linkType: number }): Buffer {
  const write32 = (buffer: Buffer, value: number, offset: number): void => {
    if (options.littleEndian) buffer.writeUInt32LE(value, offset);
    else buffer.writeUInt32BE(value, offset);
  };
  const header = Buffer.alloc(24);
  write32(header, options.nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  write32(header, 262144, 16);
  write32(header, options.linkType, 20);
  const parts: Buffer[] = [header];
  records.forEach((data, index) => {
    const recordHeader = Buffer.alloc(16);
    write32(recordHeader, 1_700_000_000 + index, 0);
    write32(recordHeader, options.nanoseconds ? 250_000_000 : 250_000, 4);
    write32(recordHeader, data.length, 8);
    write32(recordHeader, data.length, 12);
    parts.push(recordHeader, data);
  });
  return Buffer.concat(parts);
}

const FRAME = ethernet(0x0800, udpOverIpv4([198, 18, 0, 30], [198, 18, 0, 20], 5000, 40000, "needle"));

for (const littleEndian of [true, false]) {
  for (const nanoseconds of [true, false]) {
    test(`pcap reads ${littleEndian ? "little" : "big"}-endian ${nanoseconds ? "ns" : "us"} file`, () => {
      const file = pcapFile([FRAME, FRAME], { littleEndian, nanoseconds, linkType: LINKTYPE_ETHERNET });
      const pcap = parsePcap(file);
      assert.equal(pcap.linkType, LINKTYPE_ETHERNET);
      assert.equal(pcap.snapLength, 262144);
      assert.equal(pcap.records.length, 2);
      assert.equal(pcap.records[0]!.timeUs, 1_700_000_000_250_000);
      assert.equal(pcap.records[1]!.timeUs, 1_700_000_001_250_000);
      assert.deepEqual(pcap.records[0]!.data, FRAME);
      assert.equal(pcap.records[0]!.originalLength, FRAME.length);
    });
  }
}

test("pcap rejects unknown magic", () => {
  assert.throws(() => parsePcap(Buffer.alloc(24)), /unknown magic number 0x00000000/);
});

test("pcap rejects short header", () => {
  assert.throws(() => parsePcap(Buffer.alloc(10)), /shorter than the 24-byte global header/);
});

test("pcap rejects truncated record", () => {
  const file = pcapFile([FRAME], { littleEndian: true, nanoseconds: false, linkType: LINKTYPE_ETHERNET });
  assert.throws(() => parsePcap(file.subarray(0, file.length - 1)), /declares 48 bytes but the file ends first/);
});

test("decodeFrame reads Ethernet IPv4 UDP", () => {
  const packet = decodeFrame(LINKTYPE_ETHERNET, FRAME, 7);
  assert.equal(packet.timeUs, 7);
  assert.deepEqual(packet.ip, { version: 4, src: "198.18.0.30", dst: "198.18.0.20", protocol: 17, ttl: 63 });
  assert.deepEqual(packet.transport, { kind: "udp", srcPort: 5000, dstPort: 40000 });
  assert.equal(packet.payload.toString("utf8"), "needle");
});

test("decodeFrame ignores Ethernet padding", () => {
  const padded = Buffer.concat([FRAME, Buffer.alloc(12)]);
  assert.equal(decodeFrame(LINKTYPE_ETHERNET, padded).payload.toString("utf8"), "needle");
});

test("decodeFrame reads Linux SLL2", () => {
  const header = Buffer.alloc(20);
  header.writeUInt16BE(0x0800, 0);
  const frame = Buffer.concat([header, udpOverIpv4([192, 168, 2, 2], [198, 18, 0, 20], 1234, 80, "x")]);
  const packet = decodeFrame(LINKTYPE_LINUX_SLL2, frame);
  assert.equal(packet.ip?.src, "192.168.2.2");
  assert.equal(packet.transport?.srcPort, 1234);
});

test("decodeFrame leaves ARP undecoded", () => {
  const packet = decodeFrame(LINKTYPE_ETHERNET, ethernet(0x0806, Buffer.alloc(28)));
  assert.equal(packet.ip, undefined);
  assert.equal(packet.transport, undefined);
  assert.equal(packet.payload.length, 0);
});

test("packetsContaining matches payload only", () => {
  const packets = [decodeFrame(LINKTYPE_ETHERNET, FRAME), decodeFrame(LINKTYPE_ETHERNET, ethernet(0x0806, Buffer.alloc(28)))];
  assert.equal(packetsContaining(packets, "needle").length, 1);
  assert.equal(packetsContaining(packets, Buffer.from("needle")).length, 1);
  assert.equal(packetsContaining(packets, "absent").length, 0);
});

test("formatIpv6 compresses the longest zero run", () => {
  const cases: Array<[string, string]> = [
    ["20010db8000000000000000000000001", "2001:db8::1"],
    ["00000000000000000000000000000000", "::"],
    ["00000000000000000000000000000001", "::1"],
    ["20010db8000000010000000000000001", "2001:db8:0:1::1"],
    ["20010db8000100010001000100010001", "2001:db8:1:1:1:1:1:1"],
    ["20010db8000000010001000100010001", "2001:db8:0:1:1:1:1:1"],
    ["fe800000000000000000000000000000", "fe80::"],
  ];
  for (const [hex, expected] of cases) {
    assert.equal(formatIpv6(Buffer.from(hex, "hex")), expected, hex);
  }
});
