import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import {
  dig,
  digFlags,
  encodeQuery,
  frame,
  hasFlag,
  optOf,
  questionBytes,
  rcodeOf,
  startTestServer,
  TcpDnsClient,
  udpExchange,
} from "./dns-support.js";
import type { TestServer } from "./dns-support.js";

// Wire size 252 bytes: three 63-byte labels, one 40-byte label and the zone.
// Its A response is 12 + 256 + 266 = 534 bytes without OPT, 545 with it.
const LONG_MEMBER = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(40)}.cyphonic.internal`;
const LONG_MISSING = `missing${"a".repeat(56)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(40)}.cyphonic.internal`;

let t: TestServer;

before(async () => {
  t = await startTestServer();
});

after(async () => {
  await t.server.close();
});

test("OPT in query gives OPT in response", async () => {
  const response = await udpExchange(t.port, encodeQuery({ name: "peer.cyphonic.internal", udpPayloadSize: 4096 }));
  assert.ok(response);
  const opt = optOf(dnsPacket.decode(response));
  assert.ok(opt, "response must carry an OPT record");
  assert.equal(opt.udpPayloadSize, 1232);
  assert.equal(opt.ednsVersion, 0);
});

test("no OPT in query gives none back", async () => {
  const response = await udpExchange(t.port, encodeQuery({ name: "peer.cyphonic.internal" }));
  assert.ok(response);
  const decoded = dnsPacket.decode(response);
  assert.equal(optOf(decoded), undefined);
  assert.equal(decoded.additionals?.length, 0);
});

test("DO bit is copied", async () => {
  const query = encodeQuery({ name: "peer.cyphonic.internal", udpPayloadSize: 1232, dnssecOk: true });
  const withDo = await udpExchange(t.port, query);
  assert.ok(withDo);
  assert.equal(optOf(dnsPacket.decode(withDo))?.flag_do, true);
  const withoutDo = await udpExchange(t.port, encodeQuery({ name: "peer.cyphonic.internal", udpPayloadSize: 1232 }));
  assert.ok(withoutDo);
  assert.equal(optOf(dnsPacket.decode(withoutDo))?.flag_do, false);
});

test("without OPT a 534-byte answer is truncated", async () => {
  const query = encodeQuery({ name: LONG_MEMBER, id: 0x0a0a });
  const response = await udpExchange(t.port, query);
  assert.ok(response);
  assert.equal(hasFlag(response, dnsPacket.TRUNCATED_RESPONSE), true);
  assert.equal(response.readUInt16BE(0), 0x0a0a);
  assert.equal(response.readUInt16BE(4), 1, "QDCOUNT");
  assert.equal(response.readUInt16BE(6), 0, "ANCOUNT");
  assert.equal(response.readUInt16BE(8), 0, "NSCOUNT");
  assert.equal(response.readUInt16BE(10), 0, "ARCOUNT");
  assert.deepEqual(questionBytes(response), questionBytes(query));
  assert.equal(response.length, 12 + questionBytes(query).length);
});

test("EDNS0 1232 fits the 545-byte answer", async () => {
  const response = await udpExchange(t.port, encodeQuery({ name: LONG_MEMBER, udpPayloadSize: 1232 }));
  assert.ok(response);
  assert.equal(response.length, 545);
  assert.equal(hasFlag(response, dnsPacket.TRUNCATED_RESPONSE), false);
  assert.equal(dnsPacket.decode(response).answers?.length, 1);
});

test("EDNS0 size below 512 counts as 512", async () => {
  // The NXDOMAIN with SOA for this name is between 100 and 512 bytes.
  const small = await udpExchange(t.port, encodeQuery({ name: LONG_MISSING, udpPayloadSize: 100 }));
  assert.ok(small);
  assert.ok(small.length > 100, `response is ${small.length} bytes`);
  assert.ok(small.length <= 512, `response is ${small.length} bytes`);
  assert.equal(hasFlag(small, dnsPacket.TRUNCATED_RESPONSE), false);
  assert.equal(rcodeOf(small), 3);

  // A client size between 512 and 1232 is the limit as is, and 540 is below the 545-byte answer.
  const cut = await udpExchange(t.port, encodeQuery({ name: LONG_MEMBER, udpPayloadSize: 540 }));
  assert.ok(cut);
  assert.equal(hasFlag(cut, dnsPacket.TRUNCATED_RESPONSE), true);
  assert.ok(optOf(dnsPacket.decode(cut)), "a truncated response keeps the OPT record");
});

test("TCP carries the answer in full", async () => {
  const client = await TcpDnsClient.connect(t.port);
  await client.write(frame(encodeQuery({ name: LONG_MEMBER })));
  const [response] = await client.waitForMessages(1);
  assert.ok(response);
  assert.equal(hasFlag(response, dnsPacket.TRUNCATED_RESPONSE), false);
  assert.equal(dnsPacket.decode(response).answers?.length, 1);
  client.destroy();
});

test("dig retries a truncated answer over TCP", async () => {
  const truncated = await dig(t.port, ["+noedns", "+ignore", LONG_MEMBER, "A"]);
  assert.ok(digFlags(truncated).includes("tc"), truncated);
  const retried = await dig(t.port, ["+noedns", LONG_MEMBER, "A", "+short"]);
  assert.equal(retried.trim(), "10.77.1.1");
});

test("EDNS version 1 gets BADVERS", async () => {
  const query = encodeQuery({ name: "peer.cyphonic.internal", udpPayloadSize: 1232, ednsVersion: 1 });
  const response = await udpExchange(t.port, query);
  assert.ok(response);
  const opt = optOf(dnsPacket.decode(response));
  assert.ok(opt);
  // BADVERS is 16: 0 in the header's 4 bits and 1 in the OPT's upper 8 bits.
  assert.equal(rcodeOf(response), 0);
  assert.equal(opt.extendedRcode, 1);
  assert.equal(opt.ednsVersion, 0);
  assert.equal(dnsPacket.decode(response).answers?.length, 0);
  assert.equal(t.server.counters.get("dns.badvers"), 1);
});
