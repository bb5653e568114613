// The dataplane worker's per-packet rules, in memory: sending only within
// granted counters, the tunnel source check, junk counted without IPC, and a
// reply that follows the peer's new path at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { FastPath } from "../../firmware/src/dataplane/fast-path.js";
import { COUNTER_BLOCK, FromWorker } from "../../firmware/src/dataplane/ipc.js";
import { Endpoint } from "../../firmware/src/protocol/endpoint.js";
import { SessionState, TransportSession } from "../../firmware/src/protocol/session.js";
import { PeerPath } from "../../firmware/src/transport/path.js";
import { ipv4Packet } from "./fixtures/dataplane.js";

const LOCAL = 0x64400001; // 100.64.0.1
const REMOTE = 0x64400002; // 100.64.0.2
const OLD_ENDPOINT = { address: "198.18.0.20", port: 7000 };
const NEW_ENDPOINT = { address: "198.18.0.30", port: 40000 };
const LOCAL_INDEX = 0x1111;
const REMOTE_INDEX = 0x2222;

/** Creates a fast path carrying one tunnel session, and the peer's end of that session. */
function carrying(limit = COUNTER_BLOCK, path: PeerPath = { kind: "direct", endpoint: OLD_ENDPOINT }) {
  const sent: { datagram: Buffer; to: Endpoint }[] = [];
  const tun: Buffer[] = [];
  const control: FromWorker[] = [];
  const fast = new FastPath({ sendUdp: (datagram, to) => sent.push({ datagram, to }), writeTun: (p) => tun.push(p), toControl: (m) => control.push(m) });
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const state = (localIndex: number, remoteIndex: number, sendKey: Buffer, receiveKey: Buffer): SessionState => ({
    localIndex,
    remoteIndex,
    sendKey,
    receiveKey,
    remoteStatic: Buffer.alloc(32),
    isInitiator: true,
    createdMs: Date.now(),
    confirmed: true,
    sendCounter: 0n,
    window: { highest: -1n, bitmap: new Uint32Array(64) },
  });
  fast.control({ t: "peer", info: { id: 1, group: 1, keyHex: "aa", path, current: LOCAL_INDEX, tunnel: { local: LOCAL, remote: REMOTE }, relay: false } });
  fast.control({ t: "session", peer: 1, state: state(LOCAL_INDEX, REMOTE_INDEX, k1, k2), limit });
  const peerEnd = TransportSession.fromState(state(REMOTE_INDEX, LOCAL_INDEX, k2, k1));
  return { fast, sent, tun, control, peerEnd };
}

test("a packet from the local stack goes out encrypted, on the peer's path", () => {
  const { fast, sent, peerEnd } = carrying();
  const packet = ipv4Packet(LOCAL, REMOTE);
  fast.receivePacket(packet);
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]!.to, OLD_ENDPOINT);
  const frame = { receiverIndex: REMOTE_INDEX, counter: 0n, header: sent[0]!.datagram.subarray(0, 16), ciphertext: sent[0]!.datagram.subarray(16) };
  assert.deepEqual(peerEnd.decrypt(frame, Date.now()), packet);
});

test("send counters stay below the grant", () => {
  const { fast, sent, control } = carrying(4n);
  for (let i = 0; i < 6; i++) fast.receivePacket(ipv4Packet(LOCAL, REMOTE));
  assert.equal(sent.length, 4, "counters 0 to 3 only");
  assert.deepEqual(
    sent.map((s) => s.datagram.readBigUInt64BE(8)),
    [0n, 1n, 2n, 3n],
  );
  assert.equal(fast.counters.get("dataplane.drop.counter_not_granted"), 2);
  assert.deepEqual(control.filter((m) => m.t === "reserve"), [{ t: "reserve", index: LOCAL_INDEX }], "one request in flight");

  fast.control({ t: "grant", index: LOCAL_INDEX, limit: 8n });
  fast.receivePacket(ipv4Packet(LOCAL, REMOTE));
  assert.equal(sent.at(-1)!.datagram.readBigUInt64BE(8), 4n);
});

test("a tunnel packet with a source other than the peer's virtual IP is dropped", () => {
  const { fast, tun, peerEnd } = carrying();
  fast.receiveDatagram(peerEnd.encrypt(ipv4Packet(0x64400063, LOCAL), Date.now()), { kind: "direct", endpoint: OLD_ENDPOINT });
  assert.equal(tun.length, 0);
  assert.equal(fast.counters.get("drop.spoofed_source"), 1);
  fast.receiveDatagram(peerEnd.encrypt(ipv4Packet(REMOTE, LOCAL), Date.now()), { kind: "direct", endpoint: OLD_ENDPOINT });
  assert.equal(tun.length, 1);
});

test("junk and unknown indexes are counted here and never reach the control plane", () => {
  const { fast, control } = carrying();
  const source = { kind: "direct" as const, endpoint: OLD_ENDPOINT };
  fast.receiveDatagram(Buffer.from([4, 0]), source);
  fast.receiveDatagram(Buffer.alloc(64, 9), source);
  const unknown = Buffer.alloc(64);
  unknown[0] = 4;
  unknown.writeUInt32BE(0x9999, 4);
  fast.receiveDatagram(unknown, source);
  assert.equal(fast.counters.get("drop.short"), 1);
  assert.equal(fast.counters.get("drop.bad_type"), 1);
  assert.equal(fast.counters.get("drop.unknown_session"), 1);
  assert.equal(control.length, 0, "nothing went to the control plane");
  const initiation = Buffer.alloc(148);
  initiation[0] = 1;
  fast.receiveDatagram(initiation, source);
  assert.equal(control.length, 1);
  assert.equal(control[0]!.t, "datagram");
});

test("reply follows a roaming peer at once", () => {
  const { fast, sent, control, peerEnd } = carrying();
  fast.receiveDatagram(peerEnd.encrypt(ipv4Packet(REMOTE, LOCAL), Date.now()), { kind: "direct", endpoint: NEW_ENDPOINT });
  assert.deepEqual(control.at(-1), { t: "authenticated", index: LOCAL_INDEX, source: { kind: "direct", endpoint: NEW_ENDPOINT } });
  fast.receivePacket(ipv4Packet(LOCAL, REMOTE));
  assert.deepEqual(sent.at(-1)!.to, NEW_ENDPOINT);
});

test("relayed packet keeps a fresh direct path", () => {
  const { fast, sent, peerEnd } = carrying();
  fast.receiveDatagram(peerEnd.encrypt(Buffer.alloc(0), Date.now()), { kind: "direct", endpoint: OLD_ENDPOINT });
  fast.receiveDatagram(peerEnd.encrypt(ipv4Packet(REMOTE, LOCAL), Date.now()), { kind: "relay", routeId: 5, relayKey: "bb" });
  fast.receivePacket(ipv4Packet(LOCAL, REMOTE));
  assert.deepEqual(sent.at(-1)!.to, OLD_ENDPOINT);
});
