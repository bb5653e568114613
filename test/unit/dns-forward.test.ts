import { test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import type { Answer, DecodedPacket } from "dns-packet";
import {
  dig,
  digFlags,
  digStatus,
  encodeQuery,
  FakeUpstream,
  firstAnswerData,
  frame,
  hasFlag,
  LOOPBACK,
  optOf,
  questionBytes,
  rcodeOf,
  startTestServer,
  TcpDnsClient,
  udpExchange,
  upstreamResponse,
} from "./dns-support.js";
import type { TestServer, UpstreamReply } from "./dns-support.js";

// Record data only: no test sends traffic to this documentation address (RFC 5737).
const UPSTREAM_ANSWER_IPV4 = "192.0.2.10";

function aAnswer(query: DecodedPacket): Answer[] {
  return [{ type: "A", name: query.questions?.[0]?.name ?? "", ttl: 60, data: UPSTREAM_ANSWER_IPV4 }];
}

/** About 2100 bytes of TXT records, larger than any UDP response this server sends. */
function bigAnswer(query: DecodedPacket): Answer[] {
  const name = query.questions?.[0]?.name ?? "";
  return Array.from({ length: 20 }, (_, i) => ({ type: "TXT" as const, name, ttl: 60, data: `${i}`.padEnd(80, "x") }));
}

async function withUpstream(
  reply: UpstreamReply,
  run: (t: TestServer, upstream: FakeUpstream) => Promise<void>,
  queryTimeoutMs = 1_000,
): Promise<void> {
  const upstream = await FakeUpstream.start(reply);
  const t = await startTestServer({ upstream: { address: LOOPBACK, port: upstream.port }, queryTimeoutMs });
  try {
    await run(t, upstream);
  } finally {
    await t.server.close();
    await upstream.close();
  }
}

const answerAll: UpstreamReply = (query) => [upstreamResponse(query, aAnswer(query))];

test("forwards other names to upstream", async () => {
  await withUpstream(answerAll, async (t, upstream) => {
    const query = encodeQuery({ name: "WWW.Example.Test", id: 0x5150, udpPayloadSize: 1232 });
    const response = await udpExchange(t.port, query);
    assert.ok(response);
    assert.equal(response.readUInt16BE(0), 0x5150);
    assert.deepEqual(questionBytes(response), questionBytes(query));
    assert.equal(firstAnswerData(response), UPSTREAM_ANSWER_IPV4);

    assert.equal(upstream.received.length, 1);
    const forwarded = upstream.received[0]?.raw ?? Buffer.alloc(0);
    assert.equal(upstream.received[0]?.transport, "udp");
    // Everything but the ID is the client's query unchanged.
    assert.deepEqual(forwarded.subarray(2), query.subarray(2));
    assert.equal(t.server.counters.get("dns.forwarded"), 1);
  });
});

test("dig through the forwarder", async () => {
  await withUpstream(answerAll, async (t) => {
    assert.equal((await dig(t.port, ["www.example.test", "+short"])).trim(), UPSTREAM_ANSWER_IPV4);
    assert.equal((await dig(t.port, ["+tcp", "www.example.test", "+short"])).trim(), UPSTREAM_ANSWER_IPV4);
    const overlay = await dig(t.port, ["peer.cyphonic.internal", "A"]);
    assert.ok(digFlags(overlay).includes("ra"), "RA must be set when an upstream is configured");
    assert.ok(digFlags(overlay).includes("aa"));
  });
});

test("evil suffix is forwarded, not looked up", async () => {
  await withUpstream(answerAll, async (t, upstream) => {
    const output = await dig(t.port, ["peer.cyphonic.internal.evil.example", "+short"]);
    assert.equal(output.trim(), UPSTREAM_ANSWER_IPV4);
    assert.equal(t.calls.length, 0);
    const forwarded = dnsPacket.decode(upstream.received[0]?.raw ?? Buffer.alloc(0));
    assert.equal(forwarded.questions?.[0]?.name, "peer.cyphonic.internal.evil.example");
  });
});

test("overlay names never reach upstream", async () => {
  await withUpstream(answerAll, async (t, upstream) => {
    for (const name of ["peer.cyphonic.internal", "missing.cyphonic.internal", "cyphonic.internal"]) {
      await dig(t.port, [name, "AAAA"]);
    }
    assert.equal(upstream.received.length, 0);
  });
});

test("silent upstream times out with SERVFAIL", async () => {
  await withUpstream(
    () => [],
    async (t) => {
      const started = Date.now();
      const response = await udpExchange(t.port, encodeQuery({ name: "www.example.test", id: 77 }), 3_000);
      const elapsedMs = Date.now() - started;
      assert.ok(response);
      assert.equal(response.readUInt16BE(0), 77);
      assert.equal(rcodeOf(response), 2);
      assert.equal(hasFlag(response, dnsPacket.RECURSION_AVAILABLE), true);
      assert.ok(elapsedMs >= 250, `SERVFAIL after ${elapsedMs} ms, expected about 300 ms`);
      assert.ok(elapsedMs < 2_000, `SERVFAIL after ${elapsedMs} ms, expected about 300 ms`);
      assert.equal(t.server.counters.get("dns.forward_timeout"), 1);
    },
    300,
  );
});

test("mismatched upstream responses are ignored", async () => {
  const reply: UpstreamReply = (query) => {
    const wrongId = upstreamResponse({ ...query, id: ((query.id ?? 0) + 1) & 0xffff }, aAnswer(query));
    const wrongQuestion = upstreamResponse({ ...query, questions: [{ name: "other.example", type: "A" }] }, aAnswer(query));
    const notResponse = Buffer.from(wrongId);
    notResponse.writeUInt16BE(query.id ?? 0, 0);
    notResponse.writeUInt16BE(notResponse.readUInt16BE(2) & 0x7fff, 2);
    const right = upstreamResponse(query, aAnswer(query));
    return [Buffer.alloc(3), wrongId, wrongQuestion, notResponse, right];
  };
  await withUpstream(reply, async (t) => {
    const response = await udpExchange(t.port, encodeQuery({ name: "www.example.test" }));
    assert.ok(response);
    assert.equal(firstAnswerData(response), UPSTREAM_ANSWER_IPV4);
    assert.equal(t.server.counters.get("dns.drop.upstream_mismatch_short"), 1);
    assert.equal(t.server.counters.get("dns.drop.upstream_mismatch_id"), 1);
    assert.equal(t.server.counters.get("dns.drop.upstream_mismatch_question"), 1);
    assert.equal(t.server.counters.get("dns.drop.upstream_mismatch_not_response"), 1);
  });
});

test("truncated upstream answer is retried over TCP", async () => {
  const reply: UpstreamReply = (query, _raw, transport) =>
    transport === "udp"
      ? [upstreamResponse(query, [], dnsPacket.RECURSION_AVAILABLE | dnsPacket.TRUNCATED_RESPONSE)]
      : [upstreamResponse(query, bigAnswer(query))];
  await withUpstream(reply, async (t, upstream) => {
    const client = await TcpDnsClient.connect(t.port);
    await client.write(frame(encodeQuery({ name: "big.example.test", id: 9 })));
    const [response] = await client.waitForMessages(1);
    assert.ok(response);
    assert.equal(response.readUInt16BE(0), 9);
    assert.equal(hasFlag(response, dnsPacket.TRUNCATED_RESPONSE), false);
    assert.equal(dnsPacket.decode(response).answers?.length, 20);
    assert.deepEqual(
      upstream.received.map((entry) => entry.transport),
      ["udp", "tcp"],
    );
    client.destroy();

    // A UDP client gets the truncated response as is and retries over TCP itself.
    const udpResponse = await udpExchange(t.port, encodeQuery({ name: "big.example.test" }));
    assert.ok(udpResponse);
    assert.equal(hasFlag(udpResponse, dnsPacket.TRUNCATED_RESPONSE), true);
  });
});

test("oversized upstream answer is cut for UDP", async () => {
  const reply: UpstreamReply = (query) => [upstreamResponse(query, bigAnswer(query))];
  await withUpstream(reply, async (t) => {
    // The client offers 4096 bytes, but the server sends at most 1232 over UDP.
    const query = encodeQuery({ name: "big.example.test", udpPayloadSize: 4096, id: 3 });
    const response = await udpExchange(t.port, query);
    assert.ok(response);
    assert.equal(response.readUInt16BE(0), 3);
    assert.equal(hasFlag(response, dnsPacket.TRUNCATED_RESPONSE), true);
    assert.equal(response.readUInt16BE(6), 0, "ANCOUNT");
    assert.deepEqual(questionBytes(response), questionBytes(query));
    assert.equal(optOf(dnsPacket.decode(response))?.udpPayloadSize, 1232);
    assert.equal(t.server.counters.get("dns.truncated"), 1);

    const output = await dig(t.port, ["big.example.test", "TXT"]);
    assert.equal(digStatus(output), "NOERROR");
    assert.match(output, /ANSWER: 20,/, "dig retries the truncated response over TCP");
  });
});

test("unreachable upstream gives SERVFAIL", async () => {
  const probe = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => probe.bind(0, LOOPBACK, () => resolve()));
  const closedPort = probe.address().port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));

  const t = await startTestServer({ upstream: { address: LOOPBACK, port: closedPort }, queryTimeoutMs: 2_000 });
  try {
    const started = Date.now();
    const response = await udpExchange(t.port, encodeQuery({ name: "www.example.test" }), 3_000);
    assert.ok(response);
    assert.equal(rcodeOf(response), 2);
    // Loopback returns ICMP port unreachable, so the error comes before the timeout.
    assert.ok(Date.now() - started < 1_500);
    assert.equal(t.server.counters.get("dns.forward_error"), 1);
  } finally {
    await t.server.close();
  }
});

test("close during forwarding does not crash", async () => {
  await withUpstream(
    () => [],
    async (t) => {
      const pending = udpExchange(t.port, encodeQuery({ name: "www.example.test" }), 500);
      await new Promise((resolve) => setTimeout(resolve, 50));
      await t.server.close();
      assert.equal(await pending, null);
      assert.equal(t.server.counters.get("dns.forward_error"), 1);
    },
    5_000,
  );
});
