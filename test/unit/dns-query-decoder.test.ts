import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import dnsPacket from "dns-packet";
import { decodeQuery } from "../../firmware/src/node/dns/query-decoder.js";
import { countsFitLength, readHeader } from "../../firmware/src/node/dns/header.js";
import { encodeQuery } from "./dns-support.js";

const MAX_QUERY_BYTES = 4096;

/** 12-byte header with QR=0, OPCODE=QUERY and every count at 65535. */
function hugeCountsHeader(): Buffer {
  const header = Buffer.alloc(12, 0xff);
  header.writeUInt16BE(0xabcd, 0);
  header.writeUInt16BE(0x0100, 2);
  return header;
}

/** Builds a query with an EDNS cookie option, whose last bytes dns-packet reads past when cut. */
function queryWithCookie(): Buffer {
  return dnsPacket.encode({
    type: "query",
    id: 7,
    questions: [{ name: "a.example", type: "A" }],
    additionals: [
      {
        type: "OPT",
        name: ".",
        udpPayloadSize: 4096,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        // @types/dns-packet 5.6.5 has no type for the COOKIE option (code 10), which dns-packet encodes as raw data.
        options: [{ code: 10, data: Buffer.alloc(8) } as unknown as dnsPacket.PacketOpt],
      },
    ],
  });
}

test("decodeQuery accepts a plain query", () => {
  const result = decodeQuery(encodeQuery({ name: "Peer.Cyphonic.Internal", type: "AAAA", id: 99 }), MAX_QUERY_BYTES);
  assert.equal(result.kind, "query");
  if (result.kind !== "query") return;
  assert.equal(result.query.header.id, 99);
  assert.equal(result.query.header.recursionDesired, true);
  assert.deepEqual(result.query.questionText, { name: "Peer.Cyphonic.Internal", type: "AAAA", class: "IN" });
  assert.equal(result.query.edns, null);
});

test("decodeQuery reads the OPT record", () => {
  const result = decodeQuery(encodeQuery({ name: "a.example", udpPayloadSize: 4000, dnssecOk: true }), MAX_QUERY_BYTES);
  assert.equal(result.kind, "query");
  if (result.kind !== "query") return;
  assert.deepEqual(result.query.edns, { udpPayloadBytes: 4000, version: 0, dnssecOk: true });
});

test("decodeQuery drops short and oversized messages", () => {
  for (const length of [0, 1, 11]) {
    assert.deepEqual(decodeQuery(Buffer.alloc(length), MAX_QUERY_BYTES), { kind: "drop", reason: "short_header" });
  }
  const big = Buffer.concat([encodeQuery({ name: "a.example" }), Buffer.alloc(MAX_QUERY_BYTES)]);
  assert.deepEqual(decodeQuery(big, MAX_QUERY_BYTES), { kind: "drop", reason: "query_too_large" });
});

test("decodeQuery drops responses", () => {
  const response = encodeQuery({ name: "a.example" });
  response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
  assert.deepEqual(decodeQuery(response, MAX_QUERY_BYTES), { kind: "drop", reason: "response" });
});

test("decodeQuery drops implausible counts", () => {
  assert.deepEqual(decodeQuery(hugeCountsHeader(), MAX_QUERY_BYTES), { kind: "drop", reason: "implausible_counts" });

  // One question of 5 bytes fits, a second question or one RR more does not.
  const rootQuery = encodeQuery({ name: "." });
  assert.equal(rootQuery.length, 17);
  assert.equal(countsFitLength(readHeader(rootQuery), rootQuery.length), true);
  const oneMoreRecord = Buffer.from(rootQuery);
  oneMoreRecord.writeUInt16BE(1, 10);
  assert.equal(countsFitLength(readHeader(oneMoreRecord), oneMoreRecord.length), false);
  assert.deepEqual(decodeQuery(oneMoreRecord, MAX_QUERY_BYTES), { kind: "drop", reason: "implausible_counts" });
});

test("decodeQuery rejects huge counts quickly", () => {
  const header = hugeCountsHeader();
  const iterations = 20_000;
  const started = performance.now();
  for (let i = 0; i < iterations; i++) decodeQuery(header, MAX_QUERY_BYTES);
  const guardedMicros = ((performance.now() - started) * 1000) / iterations;

  const unguardedIterations = 50;
  const unguardedStarted = performance.now();
  for (let i = 0; i < unguardedIterations; i++) {
    assert.throws(() => dnsPacket.decode(header));
  }
  const unguardedMicros = ((performance.now() - unguardedStarted) * 1000) / unguardedIterations;

  console.log(
    `huge-count 12-byte header: guarded reject ${guardedMicros.toFixed(2)} us/packet, ` +
      `dns-packet decode ${unguardedMicros.toFixed(0)} us/packet`,
  );
  // Loose bound, so a slow CI machine does not fail. The measured value is in the log line.
  assert.ok(guardedMicros < 100, `guarded reject took ${guardedMicros} us per packet`);
});

test("decodeQuery answers bad opcode with NOTIMP", () => {
  const notify = encodeQuery({ name: "a.example", flags: 4 << 11 });
  const result = decodeQuery(notify, MAX_QUERY_BYTES);
  assert.equal(result.kind, "error");
  if (result.kind !== "error") return;
  assert.equal(result.reason, "opcode");
  assert.equal(result.rcode, 4);
  assert.equal(result.header.opcode, 4);
});

test("decodeQuery requires exactly one question", () => {
  const none = Buffer.alloc(12);
  none.writeUInt16BE(5, 0);
  const noneResult = decodeQuery(none, MAX_QUERY_BYTES);
  assert.equal(noneResult.kind, "error");
  if (noneResult.kind === "error") assert.equal(noneResult.reason, "qdcount");

  const two = dnsPacket.encode({
    type: "query",
    id: 6,
    questions: [
      { name: "a.example", type: "A" },
      { name: "b.example", type: "A" },
    ],
  });
  const twoResult = decodeQuery(two, MAX_QUERY_BYTES);
  assert.equal(twoResult.kind, "error");
  if (twoResult.kind !== "error") return;
  assert.equal(twoResult.reason, "qdcount");
  assert.equal(twoResult.rcode, 1);
});

test("decodeQuery rejects read past the end", () => {
  const query = queryWithCookie();
  // dns-packet 5.6.1 decodes these cut messages without an error.
  for (let cut = 1; cut <= 8; cut++) {
    const truncated = query.subarray(0, query.length - cut);
    dnsPacket.decode(truncated);
    assert.ok(dnsPacket.decode.bytes > truncated.length);
    const result = decodeQuery(truncated, MAX_QUERY_BYTES);
    assert.equal(result.kind, "error", `cut ${cut}`);
    if (result.kind === "error") assert.equal(result.reason, "decode_overrun");
  }
});

test("decodeQuery rejects every truncation", () => {
  const query = queryWithCookie();
  assert.equal(decodeQuery(query, MAX_QUERY_BYTES).kind, "query");
  for (let length = 0; length < query.length; length++) {
    const kind = decodeQuery(query.subarray(0, length), MAX_QUERY_BYTES).kind;
    assert.notEqual(kind, "query", `prefix of ${length} bytes`);
  }
});

test("decodeQuery rejects bad OPT records", () => {
  const opt = { type: "OPT", name: ".", udpPayloadSize: 1232, options: [] } as unknown as dnsPacket.Answer;
  const twoOpts = dnsPacket.encode({
    type: "query",
    id: 1,
    questions: [{ name: "a.example", type: "A" }],
    additionals: [opt, opt],
  });
  const twoResult = decodeQuery(twoOpts, MAX_QUERY_BYTES);
  assert.equal(twoResult.kind, "error");
  if (twoResult.kind === "error") assert.equal(twoResult.reason, "opt_count");

  // dns-packet refuses to encode an OPT with a non-root owner, so patch the root byte into a label.
  const rooted = encodeQuery({ name: "a.example", udpPayloadSize: 1232 });
  const optStart = rooted.length - 11;
  const named = Buffer.concat([rooted.subarray(0, optStart), Buffer.from([1, 0x78]), rooted.subarray(optStart)]);
  const namedResult = decodeQuery(named, MAX_QUERY_BYTES);
  assert.equal(namedResult.kind, "error");
  if (namedResult.kind === "error") assert.equal(namedResult.reason, "opt_name");
});

test("decodeQuery rejects a compressed question", () => {
  const header = encodeQuery({ name: "a.example" }).subarray(0, 12);
  const compressed = Buffer.concat([header, Buffer.from([0xc0, 0x02, 0, 1, 0, 1])]);
  const result = decodeQuery(compressed, MAX_QUERY_BYTES);
  assert.equal(result.kind, "error");
  if (result.kind === "error") assert.equal(result.reason, "question_compressed");
});
