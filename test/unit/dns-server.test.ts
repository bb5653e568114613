import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { DnsServer } from "../../firmware/src/node/dns/index.js";
import {
  dig,
  digFlags,
  digStatus,
  encodeQuery,
  encodeRawLabelQuery,
  firstAnswerData,
  hasFlag,
  MEMBER_TTL_SECONDS,
  OTHER_MEMBER_IPV4,
  PEER_IPV4,
  questionBytes,
  rcodeOf,
  scriptedLookup,
  startTestServer,
  udpExchange,
} from "./dns-support.js";
import type { TestServer } from "./dns-support.js";

let t: TestServer;

before(async () => {
  t = await startTestServer({ queryTimeoutMs: 300 });
});

after(async () => {
  await t.server.close();
});

function callsSince(start: number): string[] {
  return t.calls.slice(start).map((call) => call.fqdn);
}

test("dig A over UDP", async () => {
  const output = await dig(t.port, ["Peer.Cyphonic.Internal", "A", "+short"]);
  assert.equal(output.trim(), PEER_IPV4);
});

test("dig A over TCP", async () => {
  const before = t.server.counters.get("dns.query.tcp");
  const output = await dig(t.port, ["+tcp", "peer.cyphonic.internal", "A", "+short"]);
  assert.equal(output.trim(), PEER_IPV4);
  assert.equal(t.server.counters.get("dns.query.tcp"), before + 1);
});

test("dig answer flags and TTL", async () => {
  const output = await dig(t.port, ["web.cyphonic.internal", "A", "+noall", "+answer", "+comments"]);
  assert.equal(digStatus(output), "NOERROR");
  assert.ok(digFlags(output).includes("aa"), output);
  assert.ok(digFlags(output).includes("rd"), output);
  assert.ok(!digFlags(output).includes("ra"), "RA must be clear without an upstream");
  const escapedIpv4 = OTHER_MEMBER_IPV4.replace(/\./g, "\\.");
  assert.match(output, new RegExp(`web\\.cyphonic\\.internal\\.\\s+${MEMBER_TTL_SECONDS}\\s+IN\\s+A\\s+${escapedIpv4}`));
});

test("lookup gets lower-cased name and context", async () => {
  const start = t.calls.length;
  await dig(t.port, ["PeEr.CyPhOnIc.InTeRnAl", "A", "+short"]);
  const call = t.calls[start];
  assert.ok(call);
  assert.equal(call.fqdn, "peer.cyphonic.internal");
  assert.equal(call.ctx.question.name, "PeEr.CyPhOnIc.InTeRnAl");
  assert.equal(call.ctx.question.type, "A");
  assert.equal(call.ctx.question.class, "IN");
  assert.equal(call.ctx.source.address, "127.0.0.1");
  assert.equal(call.ctx.source.transport, "udp");
  assert.ok(call.ctx.source.port > 0);
});

test("dig AAAA of member is NODATA", async () => {
  for (const type of ["AAAA", "MX", "TXT", "SRV"]) {
    const start = t.calls.length;
    const output = await dig(t.port, ["peer.cyphonic.internal", type]);
    assert.equal(digStatus(output), "NOERROR", type);
    assert.match(output, /ANSWER: 0,/, type);
    assert.match(output, /AUTHORITY: 1,/, type);
    assert.ok(digFlags(output).includes("aa"), type);
    assert.deepEqual(callsSince(start), ["peer.cyphonic.internal"], type);
  }
});

test("dig unknown member is NXDOMAIN", async () => {
  for (const type of ["A", "AAAA"]) {
    const output = await dig(t.port, ["missing.cyphonic.internal", type]);
    assert.equal(digStatus(output), "NXDOMAIN", type);
    assert.ok(digFlags(output).includes("aa"), type);
    const soa = /cyphonic\.internal\.\s+5\s+IN\s+SOA\s+cyphonic\.internal\. hostmaster\.cyphonic\.internal\./;
    assert.match(output, soa, type);
  }
});

test("dig apex is NODATA without lookup", async () => {
  for (const type of ["A", "SOA", "AAAA"]) {
    const start = t.calls.length;
    const output = await dig(t.port, ["Cyphonic.Internal", type]);
    assert.equal(digStatus(output), "NOERROR", type);
    assert.match(output, /ANSWER: 0,/, type);
    assert.deepEqual(callsSince(start), [], type);
  }
});

test("evil suffix is refused, not looked up", async () => {
  const start = t.calls.length;
  for (const name of ["peer.cyphonic.internal.evil.example", "xcyphonic.internal", "peer.xcyphonic.internal"]) {
    const output = await dig(t.port, [name, "A"]);
    assert.equal(digStatus(output), "REFUSED", name);
  }
  assert.deepEqual(callsSince(start), []);
});

test("lookup failures give SERVFAIL", async () => {
  for (const name of ["failing.cyphonic.internal", "throwing.cyphonic.internal", "slow.cyphonic.internal"]) {
    const output = await dig(t.port, [name, "A"]);
    assert.equal(digStatus(output), "SERVFAIL", name);
    assert.ok(!digFlags(output).includes("aa"), name);
  }
  assert.equal(t.server.counters.get("dns.overlay.lookup_servfail"), 1);
  assert.equal(t.server.counters.get("dns.overlay.lookup_error"), 1);
  assert.equal(t.server.counters.get("dns.overlay.lookup_timeout"), 1);
});

test("question, ID and RD are echoed", async () => {
  const query = encodeQuery({ name: "PeEr.CYPHONIC.internal", id: 0xbeef, flags: dnsPacket.RECURSION_DESIRED });
  const response = await udpExchange(t.port, query);
  assert.ok(response);
  assert.equal(response.readUInt16BE(0), 0xbeef);
  assert.deepEqual(questionBytes(response), questionBytes(query));
  assert.equal(hasFlag(response, dnsPacket.RECURSION_DESIRED), true);
  assert.equal(hasFlag(response, dnsPacket.AUTHORITATIVE_ANSWER), true);
  const decoded = dnsPacket.decode(response);
  assert.equal(decoded.answers?.[0]?.name, "PeEr.CYPHONIC.internal");
  assert.equal(firstAnswerData(response), PEER_IPV4);

  const noRecursion = await udpExchange(t.port, encodeQuery({ name: "peer.cyphonic.internal", flags: 0 }));
  assert.ok(noRecursion);
  assert.equal(hasFlag(noRecursion, dnsPacket.RECURSION_DESIRED), false);
});

test("odd labels are echoed byte for byte", async () => {
  const labels = [Buffer.from("a.b"), Buffer.from([0xff, 0x00, 0x41]), Buffer.from("Example")];
  const query = encodeRawLabelQuery(labels);
  const response = await udpExchange(t.port, query);
  assert.ok(response);
  assert.equal(rcodeOf(response), 5);
  assert.deepEqual(questionBytes(response), questionBytes(query));
});

test("invalid member label is NXDOMAIN without lookup", async () => {
  const start = t.calls.length;
  const query = encodeRawLabelQuery([Buffer.from("a.b"), Buffer.from("cyphonic"), Buffer.from("internal")]);
  const response = await udpExchange(t.port, query);
  assert.ok(response);
  assert.equal(rcodeOf(response), 3);
  assert.deepEqual(questionBytes(response), questionBytes(query));
  assert.deepEqual(callsSince(start), []);
  assert.equal(t.server.counters.get("dns.overlay.nxdomain_invalid_name"), 1);
});

test("ANY returns the A record", async () => {
  // @types/dns-packet 5.6.5 lists no "ANY" record type, though dns-packet encodes it as 255.
  const query = encodeQuery({ name: "peer.cyphonic.internal", type: "ANY" as dnsPacket.RecordType });
  const response = await udpExchange(t.port, query);
  assert.ok(response);
  const decoded = dnsPacket.decode(response);
  assert.equal(decoded.answers?.length, 1);
  assert.equal(decoded.answers?.[0]?.type, "A");
});

test("zone transfer and class CH are refused", async () => {
  const axfr = await udpExchange(t.port, encodeQuery({ name: "cyphonic.internal", type: "AXFR" }));
  assert.ok(axfr);
  assert.equal(rcodeOf(axfr), 5);
  const chaos = await udpExchange(t.port, encodeQuery({ name: "peer.cyphonic.internal", class: "CH" }));
  assert.ok(chaos);
  assert.equal(rcodeOf(chaos), 5);
});

test("invalid lookup result gives SERVFAIL", async () => {
  const server = await DnsServer.start({
    listen: [{ address: "127.0.0.1", port: 0 }],
    overlayDomain: "cyphonic.internal",
    lookup: async () => ({ kind: "address", ipv4: "10.0.0.300", ttlSeconds: 5 }),
  });
  try {
    const port = server.listening[0]?.port ?? 0;
    const response = await udpExchange(port, encodeQuery({ name: "peer.cyphonic.internal" }));
    assert.ok(response);
    assert.equal(rcodeOf(response), 2);
    assert.equal(server.counters.get("dns.overlay.lookup_invalid_result"), 1);
  } finally {
    await server.close();
  }
});

test("listens on IPv4 and IPv6 loopback", async () => {
  const { lookup } = scriptedLookup();
  const server = await DnsServer.start({
    listen: [
      { address: "127.0.0.1", port: 0 },
      { address: "::1", port: 0 },
    ],
    overlayDomain: "cyphonic.internal",
    lookup,
  });
  try {
    assert.equal(server.listening.length, 2);
    const [v4, v6] = server.listening;
    assert.ok(v4);
    assert.ok(v6);
    assert.equal((await dig(v4.port, ["peer.cyphonic.internal", "+short"])).trim(), PEER_IPV4);
    assert.equal((await dig(v6.port, ["peer.cyphonic.internal", "+short"], "::1")).trim(), PEER_IPV4);
    assert.equal((await dig(v6.port, ["+tcp", "peer.cyphonic.internal", "+short"], "::1")).trim(), PEER_IPV4);
  } finally {
    await server.close();
  }
});

test("start rejects bad options", async () => {
  const lookup = async () => ({ kind: "nxdomain" as const });
  await assert.rejects(
    DnsServer.start({ listen: [], overlayDomain: "cyphonic.internal", lookup }),
    /at least one listen address/,
  );
  await assert.rejects(
    DnsServer.start({ listen: [{ address: "127.0.0.1", port: 0 }], overlayDomain: "bad domain", lookup }),
    /invalid overlay domain/,
  );
  await assert.rejects(
    DnsServer.start({
      listen: [{ address: "127.0.0.1", port: 0 }],
      overlayDomain: "cyphonic.internal",
      lookup,
      queryTimeoutMs: 0,
    }),
    /invalid queryTimeoutMs/,
  );
  await assert.rejects(
    DnsServer.start({
      listen: [{ address: "127.0.0.1", port: 5399 }],
      overlayDomain: "cyphonic.internal",
      lookup,
      upstream: { address: "127.0.0.1", port: 5399 },
    }),
    /is a listen address of this DNS server/,
  );
});

test("start fails on a taken port", async () => {
  const lookup = async () => ({ kind: "nxdomain" as const });
  await assert.rejects(
    DnsServer.start({ listen: [{ address: "127.0.0.1", port: t.port }], overlayDomain: "cyphonic.internal", lookup }),
    /EADDRINUSE/,
  );
  // The running server still responds.
  assert.equal((await dig(t.port, ["peer.cyphonic.internal", "+short"])).trim(), PEER_IPV4);
});
