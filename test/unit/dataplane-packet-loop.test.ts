// The dataplane worker's UDP socket and packet loop on loopback, with real
// dgram peers: source addresses, the source cache, send errors, and a fast
// path that throws.
import { test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import os from "node:os";
import { FastPath } from "../../firmware/src/dataplane/fast-path.js";
import { PacketLoop } from "../../firmware/src/dataplane/packet-loop.js";
import { DataplaneUdpSocket, UdpSocketError } from "../../firmware/src/dataplane/udp-socket.js";
import { Endpoint } from "../../firmware/src/protocol/endpoint.js";
import { Source } from "../../firmware/src/transport/path.js";
import { Counters } from "../../firmware/src/util/counters.js";
import { logger } from "../../firmware/src/util/log.js";
import { openPacketLoop, runWithSmallMtu, waitFor } from "./fixtures/dataplane.js";

const log = logger("test");

async function peer(type: "udp4" | "udp6", address: string): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type, ipv6Only: type === "udp6" });
  await new Promise<void>((resolve) => socket.bind(0, address, () => resolve()));
  return socket;
}

function sendTo(socket: dgram.Socket, payload: string, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => socket.send(payload, port, address, (err) => (err ? reject(err) : resolve())));
}

/** Receives one datagram, polling the non-blocking socket. */
async function receiveOne(socket: DataplaneUdpSocket): Promise<{ payload: string; source: Endpoint }> {
  const buffer = Buffer.alloc(2048);
  return waitFor("a datagram", () => {
    const n = socket.receive(buffer);
    return n < 0 ? null : { payload: buffer.subarray(0, n).toString(), source: socket.source };
  });
}

test("udp socket reports plain IPv4 sources", async (t) => {
  const socket = DataplaneUdpSocket.open(0);
  t.after(() => socket.close());
  const v4 = await peer("udp4", "127.0.0.1");
  t.after(() => v4.close());

  assert.ok(socket.port > 0);
  await sendTo(v4, "one", socket.port, "127.0.0.1");
  const first = await receiveOne(socket);
  assert.equal(first.payload, "one");
  assert.deepEqual(first.source, { address: "127.0.0.1", port: v4.address().port });

  // The same source yields the same object, which the fast path compares and keeps.
  await sendTo(v4, "two", socket.port, "127.0.0.1");
  const second = await receiveOne(socket);
  assert.equal(second.payload, "two");
  assert.equal(second.source, first.source);
});

test("udp socket tells sources apart", async (t) => {
  const socket = DataplaneUdpSocket.open(0);
  t.after(() => socket.close());
  const a = await peer("udp4", "127.0.0.1");
  const b = await peer("udp4", "127.0.0.1");
  t.after(() => a.close());
  t.after(() => b.close());

  await sendTo(a, "a", socket.port, "127.0.0.1");
  const fromA = await receiveOne(socket);
  await sendTo(b, "b", socket.port, "127.0.0.1");
  const fromB = await receiveOne(socket);
  assert.equal(fromA.source.port, a.address().port);
  assert.equal(fromB.source.port, b.address().port);
  assert.notEqual(fromA.source, fromB.source);
});

test("udp socket sends to IPv4 and IPv6", async (t) => {
  const socket = DataplaneUdpSocket.open(0);
  t.after(() => socket.close());
  assert.equal(socket.dualStack, true, "this host has IPv6 on loopback");
  const v4 = await peer("udp4", "127.0.0.1");
  const v6 = await peer("udp6", "::1");
  t.after(() => v4.close());
  t.after(() => v6.close());

  const received = (s: dgram.Socket) => new Promise<{ payload: string; port: number }>((resolve) => s.once("message", (m, r) => resolve({ payload: m.toString(), port: r.port })));
  const at4 = received(v4);
  assert.equal(socket.send(Buffer.from("to v4"), { address: "127.0.0.1", port: v4.address().port }), 0);
  assert.deepEqual(await at4, { payload: "to v4", port: socket.port });
  const at6 = received(v6);
  assert.equal(socket.send(Buffer.from("to v6"), { address: "::1", port: v6.address().port }), 0);
  assert.deepEqual(await at6, { payload: "to v6", port: socket.port });

  await sendTo(v6, "from v6", socket.port, "::1");
  const back = await receiveOne(socket);
  assert.deepEqual(back.source, { address: "::1", port: v6.address().port });
});

test("udp socket bind conflict names the port", async (t) => {
  const first = DataplaneUdpSocket.open(0);
  t.after(() => first.close());
  assert.throws(
    () => DataplaneUdpSocket.open(first.port),
    (err: unknown) => err instanceof UdpSocketError && err.code === "EADDRINUSE" && err.message === `binding UDP port ${first.port} on [::] failed: bind() returned EADDRINUSE: another socket holds the port`,
  );
});

test("udp socket send to port 0 returns errno", (t) => {
  const socket = DataplaneUdpSocket.open(0);
  t.after(() => socket.close());
  // Linux rejects destination port 0 with EINVAL.
  assert.equal(socket.send(Buffer.from("x"), { address: "127.0.0.1", port: 0 }), os.constants.errno.EINVAL);
});

test("packet loop counts send errors", (t) => {
  const socket = DataplaneUdpSocket.open(0);
  t.after(() => socket.close());
  const counters = new Counters();
  const loop = new PacketLoop({ tunFd: null, socket, channelFd: null, counters, log });
  loop.sendUdp(Buffer.from("x"), { address: "127.0.0.1", port: 0 });
  loop.sendUdp(Buffer.from("x"), { address: "not an address", port: 9 });
  assert.equal(counters.get("send.errors"), 2);
  loop.writeTun(Buffer.from([0x45]));
  assert.equal(counters.get("tun.tx.drop.no_device"), 1);
});

test("packet loop survives a throwing fast path", async (t) => {
  const { socket, counters, loop } = openPacketLoop(t);
  const sources: Source[] = [];
  const fast = {
    receiveDatagram(datagram: Buffer, source: Source) {
      sources.push(source);
      if (datagram.toString() === "throw") throw new Error("handler failed");
    },
    receivePacket() {},
  } as unknown as FastPath;
  loop.start(fast);

  const sender = await peer("udp4", "127.0.0.1");
  t.after(() => sender.close());
  await sendTo(sender, "throw", socket.port, "127.0.0.1");
  await sendTo(sender, "fine", socket.port, "127.0.0.1");
  await waitFor("both datagrams", () => (sources.length === 2 ? true : null));
  assert.equal(counters.get("dataplane.receive_errors"), 1);
  // Datagrams from one source share one Source object.
  assert.equal(sources[0], sources[1]);
  assert.deepEqual(sources[0], { kind: "direct", endpoint: { address: "127.0.0.1", port: sender.address().port } });
});

test("packet loop segments a batch of sends", async (t) => {
  const { socket, counters, loop } = openPacketLoop(t);
  const sink = await peer("udp4", "127.0.0.1");
  const other = await peer("udp4", "127.0.0.1");
  t.after(() => sink.close());
  t.after(() => other.close());
  const toSink: Endpoint = { address: "127.0.0.1", port: sink.address().port };
  const toOther: Endpoint = { address: "127.0.0.1", port: other.address().port };
  const atSink: string[] = [];
  const atOther: string[] = [];
  sink.on("message", (m) => atSink.push(m.toString()));
  other.on("message", (m) => atOther.push(m.toString()));

  // Each trigger datagram makes the fast path send, inside the loop's batch:
  // five of 100 bytes and a shorter last one to the sink, then one to another peer.
  const fast = {
    receiveDatagram(datagram: Buffer) {
      const round = datagram.toString();
      for (let i = 0; i < 5; i++) loop.sendUdp(Buffer.from(`${round}-${i}-`.padEnd(100, "x")), toSink);
      loop.sendUdp(Buffer.from(`${round}-last`), toSink);
      loop.sendUdp(Buffer.from(`${round}-other`), toOther);
    },
    receivePacket() {},
  } as unknown as FastPath;
  loop.start(fast);

  const trigger = await peer("udp4", "127.0.0.1");
  t.after(() => trigger.close());
  await sendTo(trigger, "r1", socket.port, "127.0.0.1");
  await waitFor("the sink's datagrams", () => (atSink.length === 6 && atOther.length === 1 ? true : null));
  assert.deepEqual(
    atSink.map((m) => m.replace(/x+$/, "")),
    ["r1-0-", "r1-1-", "r1-2-", "r1-3-", "r1-4-", "r1-last"],
  );
  assert.equal(atSink[0]!.length, 100);
  assert.deepEqual(atOther, ["r1-other"]);
  // Six datagrams left in one segmented send; the single one to the other peer left alone.
  assert.equal(counters.get("send.segmented"), 6);
  assert.equal(counters.get("send.errors"), 0);
});

test("packet loop sends oversized batches unsegmented", { skip: process.getuid?.() !== 0 && "needs root for a network namespace" }, async (t) => {
  const result = runWithSmallMtu(t, "cyseg", "segment-fallback.ts") as { sizes: number[]; fallbacksAfter: number[]; errors: number; segmented: number };
  // Every datagram arrived whole: the kernel fragmented and reassembled it.
  assert.deepEqual(result.sizes, [1400, 1400, 1400, 1400, 1400, 1400]);
  // The first batch fell back once; the second went out unsegmented without trying.
  assert.deepEqual(result.fallbacksAfter, [1, 1]);
  assert.equal(result.errors, 0);
  assert.equal(result.segmented, 0);
});

test("packet loop yields within a slow batch", async (t) => {
  const { socket, loop } = openPacketLoop(t);
  // Each datagram takes 3 ms, as a send waiting for a full socket buffer
  // would, so a batch of 40 takes 120 ms without a yield.
  let handled = 0;
  const fast = {
    receiveDatagram() {
      const until = Date.now() + 3;
      while (Date.now() < until);
      handled++;
    },
    receivePacket() {},
  } as unknown as FastPath;
  loop.start(fast);

  const sender = await peer("udp4", "127.0.0.1");
  t.after(() => sender.close());
  // The event loop's longest stall while the batch is handled.
  let last = Date.now();
  let longestGapMs = 0;
  const ticker = setInterval(() => {
    longestGapMs = Math.max(longestGapMs, Date.now() - last);
    last = Date.now();
  }, 1);
  t.after(() => clearInterval(ticker));
  await Promise.all(Array.from({ length: 40 }, (_, i) => sendTo(sender, `d${i}`, socket.port, "127.0.0.1")));
  await waitFor("all datagrams", () => (handled === 40 ? true : null));
  // A slice is 10 ms, so the stall is one slice plus the datagram in hand, with room for a slow machine.
  assert.ok(longestGapMs < 60, `event loop stalled for ${longestGapMs} ms`);
});
