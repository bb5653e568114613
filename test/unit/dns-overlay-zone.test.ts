import { test } from "node:test";
import assert from "node:assert/strict";
import { OverlayZone } from "../../firmware/src/node/dns/overlay-zone.js";
import { hostLabelText, parseQuestion } from "../../firmware/src/node/dns/question.js";
import { encodeQuery, encodeRawLabelQuery } from "./dns-support.js";

function labelsOf(name: string): Buffer[] {
  const parsed = parseQuestion(encodeQuery({ name }));
  assert.ok(parsed.ok, `question of ${name} should parse`);
  return parsed.question.labels;
}

test("zone classifies by whole labels", () => {
  const zone = new OverlayZone("cyphonic.internal");
  const cases: [string, string][] = [
    ["peer.cyphonic.internal", "member"],
    ["Peer.CYPHONIC.Internal", "member"],
    ["a.b.peer.cyphonic.internal", "member"],
    ["cyphonic.internal", "apex"],
    ["CyPhOnIc.InTeRnAl", "apex"],
    ["peer.cyphonic.internal.evil.example", "outside"],
    ["xcyphonic.internal", "outside"],
    ["peer.xcyphonic.internal", "outside"],
    ["internal", "outside"],
    ["example.com", "outside"],
    [".", "outside"],
  ];
  for (const [name, expected] of cases) {
    assert.equal(zone.classify(labelsOf(name)).kind, expected, name);
  }
});

test("zone member fqdn is lower-cased", () => {
  const zone = new OverlayZone("Cyphonic.Internal.");
  assert.equal(zone.domain, "cyphonic.internal");
  assert.deepEqual(zone.classify(labelsOf("Web-01.PEER_X.Cyphonic.Internal")), {
    kind: "member",
    fqdn: "web-01.peer_x.cyphonic.internal",
  });
});

test("zone rejects labels no member has", () => {
  const zone = new OverlayZone("cyphonic.internal");
  const zoneLabels = [Buffer.from("cyphonic"), Buffer.from("internal")];
  const badLabels = [Buffer.from("a.b"), Buffer.from([0xc3, 0xa9]), Buffer.from("sp ace"), Buffer.from([0x00])];
  for (const bad of badLabels) {
    assert.equal(zone.classify([bad, ...zoneLabels]).kind, "invalid_member", bad.toString("hex"));
  }
  // A dot inside a label must not pass as a label boundary.
  assert.equal(zone.classify([Buffer.from("peer.cyphonic"), Buffer.from("internal")]).kind, "outside");
});

test("zone rejects invalid domain options", () => {
  for (const domain of ["", ".", "a..b", "bad domain", "ü.internal", `${"x".repeat(64)}.internal`]) {
    assert.throws(() => new OverlayZone(domain), /invalid overlay domain/, JSON.stringify(domain));
  }
});

test("zone SOA names the apex", () => {
  const soa = new OverlayZone("cyphonic.internal").soaRecord();
  assert.equal(soa.name, "cyphonic.internal");
  assert.equal(soa.data.rname, "hostmaster.cyphonic.internal");
  assert.equal(soa.data.minimum, soa.ttl);
});

test("parseQuestion reads labels, type and class", () => {
  const query = encodeQuery({ name: "Peer.Cyphonic.Internal", type: "AAAA" });
  const parsed = parseQuestion(query);
  assert.ok(parsed.ok);
  assert.deepEqual(
    parsed.question.labels.map((label) => label.toString()),
    ["Peer", "Cyphonic", "Internal"],
  );
  assert.equal(parsed.question.qtype, 28);
  assert.equal(parsed.question.qclass, 1);
  assert.deepEqual(parsed.question.bytes, query.subarray(12));
});

test("parseQuestion keeps a dot inside a label", () => {
  const parsed = parseQuestion(encodeRawLabelQuery([Buffer.from("a.b"), Buffer.from("example")]));
  assert.ok(parsed.ok);
  assert.equal(parsed.question.labels.length, 2);
  assert.equal(parsed.question.labels[0]?.toString(), "a.b");
});

test("parseQuestion rejects malformed names", () => {
  const valid = encodeQuery({ name: "peer.cyphonic.internal" });

  const truncatedName = valid.subarray(0, 16);
  assert.deepEqual(parseQuestion(truncatedName), { ok: false, reason: "question_truncated" });

  const noTypeClass = valid.subarray(0, valid.length - 2);
  assert.deepEqual(parseQuestion(noTypeClass), { ok: false, reason: "question_truncated" });

  const compressed = Buffer.concat([valid.subarray(0, 12), Buffer.from([0xc0, 0x00, 0, 1, 0, 1])]);
  assert.deepEqual(parseQuestion(compressed), { ok: false, reason: "question_compressed" });

  const extendedLabel = Buffer.concat([valid.subarray(0, 12), Buffer.from([0x41, 0x00, 0, 1, 0, 1])]);
  assert.deepEqual(parseQuestion(extendedLabel), { ok: false, reason: "question_label_type" });

  const longName = encodeRawLabelQuery(Array.from({ length: 5 }, () => Buffer.alloc(63, 0x61)));
  assert.deepEqual(parseQuestion(longName), { ok: false, reason: "question_name_too_long" });
});

test("hostLabelText folds ASCII case only", () => {
  assert.equal(hostLabelText(Buffer.from("Web-01_X")), "web-01_x");
  assert.equal(hostLabelText(Buffer.from([0xc3, 0x89])), null);
  assert.equal(hostLabelText(Buffer.alloc(0)), null);
});
