import { test } from "node:test";
import assert from "node:assert/strict";
import { Path, Role, Signal, SignalType, decodeSignal, encodeSignal } from "../../firmware/src/protocol/signaling.js";
import { ProtocolError } from "../../firmware/src/protocol/errors.js";
import { Endpoint, parseEndpoint } from "../../firmware/src/protocol/endpoint.js";

const key = Buffer.alloc(32, 7);
const route = {
  routeId: 42,
  path: Path.Relay,
  role: Role.Initiate,
  reason: "both behind NAPT",
  peer: {
    nodeId: 9,
    fqdn: "cn2.cyphonic.internal",
    virtualIP: "100.64.0.9",
    staticKey: key,
    endpoints: [parseEndpoint("198.18.0.20:7000"), parseEndpoint("[2001:db8::1]:7000"), parseEndpoint("[::ffff:10.1.2.3]:9")],
  },
  relay: { endpoints: [parseEndpoint("198.18.0.10:7402"), parseEndpoint("[2001:db8:1::10]:7402")] as Endpoint[], staticKey: key },
} as const;

const samples: Signal[] = [
  { type: SignalType.RedeemRequest, requestId: 1, token: "abc" },
  { type: SignalType.HelloRequest, requestId: 2 },
  {
    type: SignalType.Welcome,
    requestId: 3,
    nodeId: 5,
    fqdn: "cn1.cyphonic.internal",
    virtualIP: "100.64.0.5",
    prefixLength: 16,
    overlayDomain: "cyphonic.internal",
    nms: { endpoints: [parseEndpoint("198.18.0.10:7401")], staticKey: key },
    trs: { endpoints: [parseEndpoint("198.18.0.10:7402")], staticKey: key },
  },
  { type: SignalType.Error, requestId: 4, code: "token_expired", message: "token expired" },
  { type: SignalType.GeneralNodesRequest, requestId: 14, offset: 8 },
  {
    type: SignalType.GeneralNodes,
    requestId: 15,
    version: 0xabcdef01,
    total: 2,
    offset: 0,
    entries: [
      { nodeId: 3, fqdn: "sensor.cyphonic.internal", mac: "02:00:00:00:00:07", virtualIP: "100.64.0.7", publicKey: null },
      { nodeId: 4, fqdn: "cam.cyphonic.internal", mac: "0a:1b:2c:3d:4e:5f", virtualIP: "100.64.0.8", publicKey: key },
    ],
  },
  { type: SignalType.BindKeyRequest, requestId: 16, nodeId: 3, publicKey: key },
  { type: SignalType.BindKeyAck, requestId: 17, nodeId: 3 },
  { type: SignalType.Register, requestId: 5, localEndpoints: [parseEndpoint("192.168.2.2:7000")] },
  { type: SignalType.Registered, requestId: 6, observed: parseEndpoint("198.18.0.30:1024"), napt: true, keepaliveIntervalMs: 15000 },
  { type: SignalType.Keepalive, seq: 7 },
  { type: SignalType.KeepaliveAck, seq: 7, observed: parseEndpoint("198.18.0.30:1024") },
  { type: SignalType.RouteRequest, requestId: 8, target: { fqdn: "cn2.cyphonic.internal" } },
  { type: SignalType.RouteRequest, requestId: 9, target: { virtualIP: "100.64.0.9" } },
  { type: SignalType.RouteResponse, requestId: 10, route: { ...route, peer: { ...route.peer, endpoints: [...route.peer.endpoints] } } },
  { type: SignalType.RouteInstruction, instructionId: 11, route: { ...route, path: Path.Direct, relay: null, peer: { ...route.peer, endpoints: [] } } },
  { type: SignalType.RouteInstructionAck, instructionId: 12 },
  { type: SignalType.RelayData, routeId: 13, datagram: Buffer.from([4, 0, 0, 0, 1, 2, 3]) },
];

test("signaling round-trips every message type", () => {
  for (const m of samples) {
    const decoded = decodeSignal(encodeSignal(m));
    if (decoded.type === SignalType.RouteResponse) {
      // The IPv4-mapped IPv6 address normalizes to its compressed form.
      assert.equal(decoded.route.peer.endpoints[2]!.address, "::ffff:10.1.2.3");
      continue;
    }
    assert.deepEqual(decoded, m, `type 0x${m.type.toString(16)}`);
  }
});

test("signaling rejects every truncation", () => {
  for (const m of samples) {
    if (m.type === SignalType.RelayData) continue; // its datagram field takes the rest, so a cut is still well-formed
    const buf = encodeSignal(m);
    for (let n = 0; n < buf.length; n++) {
      assert.throws(() => decodeSignal(buf.subarray(0, n)), ProtocolError, `type 0x${m.type.toString(16)} cut at ${n}`);
    }
  }
});

test("signaling rejects trailing bytes", () => {
  for (const m of samples) {
    if (m.type === SignalType.RelayData) continue;
    const buf = Buffer.concat([encodeSignal(m), Buffer.from([0])]);
    assert.throws(() => decodeSignal(buf), (e: unknown) => e instanceof ProtocolError && e.reason === "oversized");
  }
});

test("signaling rejects out-of-domain fields", () => {
  const bad = encodeSignal(samples.find((m) => m.type === SignalType.RouteResponse)!);
  const pathOffset = 1 + 4 + 4; // type, request id, route id
  const copy = Buffer.from(bad);
  copy[pathOffset] = 3;
  assert.throws(() => decodeSignal(copy), (e: unknown) => e instanceof ProtocolError && e.reason === "bad_field");
  assert.throws(() => decodeSignal(Buffer.from([0x3e])), (e: unknown) => e instanceof ProtocolError && e.reason === "bad_type");
});

test("signaling decoder survives random input", () => {
  let seed = 99;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const buf = Buffer.alloc(rand() % 200);
    for (let j = 0; j < buf.length; j++) buf[j] = rand() & 0xff;
    if (buf.length > 0) buf[0] = 0x10 + (rand() % 0x30);
    let decoded: Signal;
    try {
      decoded = decodeSignal(buf);
    } catch (e) {
      assert.ok(e instanceof ProtocolError, `unexpected ${String(e)}`);
      continue;
    }
    // Whatever the decoder accepts must be exactly what the encoder writes.
    assert.deepEqual(encodeSignal(decoded), buf);
    accepted++;
  }
  assert.ok(accepted > 0, "some short keep-alive and relay frames are valid by construction");
});
