import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { SecureEndpoint } from "../../firmware/src/transport/secure-endpoint.js";
import { Peer } from "../../firmware/src/transport/peer.js";
import { PeerPath, Source } from "../../firmware/src/transport/path.js";
import { logger } from "../../firmware/src/util/log.js";

const A = { address: "198.18.0.1", port: 1000 };
const B = { address: "198.18.0.2", port: 2000 };

/** Two engines wired in memory; datagrams are delivered synchronously unless held. */
function wire() {
  const keysA = generateKeyPair();
  const keysB = generateKeyPair();
  const received: { a: string[]; b: string[] } = { a: [], b: [] };
  const wireLog: { to: "a" | "b"; datagram: Buffer; from: Source }[] = [];
  let clock = 1_000_000;
  let aSource = A;
  const log = logger("test");
  // eslint-disable-next-line prefer-const
  let a: SecureEndpoint, b: SecureEndpoint;
  const deliver = (to: "a" | "b", datagram: Buffer, from: Source) => {
    wireLog.push({ to, datagram: Buffer.from(datagram), from });
    (to === "a" ? a : b).receive(datagram, from);
  };
  a = new SecureEndpoint(keysA, (d: Buffer, _p: PeerPath) => deliver("b", d, { kind: "direct", endpoint: aSource }), {
    acceptInitiation: () => ({ reject: "unknown_peer" }),
    onMessage: (_p, m) => received.a.push(m.toString()),
  }, log, () => clock);
  b = new SecureEndpoint(keysB, (d: Buffer) => deliver("a", d, { kind: "direct", endpoint: B }), {
    acceptInitiation: (key) => {
      const peer = b.peer(key) ?? b.addPeer(new Peer(key, null, undefined, false));
      return key.equals(keysA.publicKey) ? { peer } : { reject: "unknown_peer" };
    },
    onMessage: (_p, m) => received.b.push(m.toString()),
  }, log, () => clock);
  const peerB = a.addPeer(new Peer(keysB.publicKey, { kind: "direct", endpoint: B }, undefined, true));
  return {
    a, b, peerB, received, wireLog, keysA, keysB,
    advance: (ms: number) => (clock += ms),
    moveA: (e: typeof A) => (aSource = e),
  };
}

test("engines handshake on demand and deliver queued data", () => {
  const w = wire();
  w.a.send(w.peerB, Buffer.from("\x10one"));
  w.a.send(w.peerB, Buffer.from("\x10two"));
  assert.deepEqual(w.received.b, ["\x10one", "\x10two"]);
  w.b.send(w.b.peer(w.keysA.publicKey)!, Buffer.from("\x10back"));
  assert.deepEqual(w.received.a, ["\x10back"]);
  assert.equal(w.a.counters.get("handshake.completed"), 1);
});

test("engine drops and counts replayed and forged datagrams", () => {
  const w = wire();
  w.a.send(w.peerB, Buffer.from("\x10data"));
  const transport = w.wireLog.filter((x) => x.to === "b" && x.datagram[0] === 4).at(-1)!;
  w.b.receive(transport.datagram, transport.from);
  assert.equal(w.b.counters.get("drop.replay"), 1);
  const forged = Buffer.from(transport.datagram);
  forged[forged.length - 1]! ^= 1;
  forged.writeBigUInt64BE(99n, 8);
  w.b.receive(forged, transport.from);
  assert.equal(w.b.counters.get("drop.decrypt_failed"), 1);
  const init = w.wireLog.find((x) => x.datagram[0] === 1)!;
  w.b.receive(init.datagram, init.from);
  assert.equal(w.b.counters.get("drop.stale_timestamp"), 1);
  for (let i = 0; i < 1000; i++) w.b.receive(Buffer.from([i % 6, 0, 0, 0, i, i, i]), init.from);
  assert.deepEqual(w.received.b, ["\x10data"], "nothing forged was delivered");
  w.a.send(w.peerB, Buffer.from("\x10still"));
  assert.deepEqual(w.received.b, ["\x10data", "\x10still"]);
});

test("engine rejects an initiation from an unauthorized key", () => {
  const w = wire();
  const stranger = new SecureEndpoint(generateKeyPair(), (d) => w.b.receive(d, { kind: "direct", endpoint: A }), {
    acceptInitiation: () => ({ reject: "unknown_peer" }),
    onMessage: () => {},
  }, logger("test"));
  stranger.send(stranger.addPeer(new Peer(w.keysB.publicKey, { kind: "direct", endpoint: B }, undefined, true)), Buffer.from("\x10x"));
  assert.equal(w.b.counters.get("drop.unknown_peer"), 1);
  assert.deepEqual(w.received.b, []);
});

test("engine follows a peer to its new address", () => {
  const w = wire();
  w.a.send(w.peerB, Buffer.from("\x10one"));
  const peerA = w.b.peer(w.keysA.publicKey)!;
  assert.deepEqual(peerA.path, { kind: "direct", endpoint: A });
  w.moveA({ address: "198.18.0.77", port: 3000 });
  w.a.send(w.peerB, Buffer.from("\x10moved"));
  assert.deepEqual(peerA.path, { kind: "direct", endpoint: { address: "198.18.0.77", port: 3000 } });
  w.b.send(peerA, Buffer.from("\x10reply"));
  assert.deepEqual(w.received.a, ["\x10reply"]);
});

test("engine rekeys after the rekey time and keeps delivering", () => {
  const w = wire();
  w.a.send(w.peerB, Buffer.from("\x10one"));
  const first = w.peerB.current;
  w.advance(121_000);
  w.a.tick();
  assert.notEqual(w.peerB.current, first, "a new session replaced the old one");
  w.a.send(w.peerB, Buffer.from("\x10two"));
  assert.deepEqual(w.received.b, ["\x10one", "\x10two"]);
  assert.equal(w.a.counters.get("handshake.completed"), 2);
});

test("engine gives up a handshake after the attempt time", () => {
  const w = wire();
  const lost = w.a.addPeer(new Peer(generateKeyPair().publicKey, { kind: "direct", endpoint: B }, undefined, true));
  w.a.send(lost, Buffer.from("\x10x"));
  for (let i = 0; i < 40; i++) {
    w.advance(1_000);
    w.a.tick();
  }
  assert.equal(lost.handshake, null);
  assert.equal(lost.queue.length, 0);
  assert.equal(w.a.counters.get("handshake.failed"), 1);
  assert.ok(w.a.counters.get("handshake.initiations_sent") >= 8, "retransmitted with backoff");
});
