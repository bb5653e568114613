// Hostile and unusual input against the dataplane worker's packet loop and
// UDP socket on loopback. Cases: empty and maximum-size datagrams, oversized
// and empty sends in a batch, ICMP errors, many sources, a destination with
// port 0, and the order of a batch when some datagrams cannot be segmented.
import { test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { FastPath } from "../../firmware/src/dataplane/fast-path.js";
import { PacketLoop } from "../../firmware/src/dataplane/packet-loop.js";
import { Endpoint } from "../../firmware/src/protocol/endpoint.js";
import { Source } from "../../firmware/src/transport/path.js";
import { openPacketLoop, runWithSmallMtu, waitFor } from "./fixtures/dataplane.js";


type After = { after(fn: () => void): void };

async function peer(t: After, type: "udp4" | "udp6", address: string): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type, ipv6Only: type === "udp6", recvBufferSize: 4 * 1024 * 1024 });
  await new Promise<void>((resolve) => socket.bind(0, address, () => resolve()));
  t.after(() => socket.close());
  return socket;
}

function sendTo(socket: dgram.Socket, payload: Buffer | string, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => socket.send(payload, port, address, (err) => (err ? reject(err) : resolve())));
}

/** Starts a packet loop on a new socket with a fast path whose receiveDatagram is `onDatagram`. */
function startLoop(t: After, onDatagram: (datagram: Buffer, source: Source, loop: PacketLoop) => void) {
  const { socket, counters, loop } = openPacketLoop(t);
  const fast = {
    receiveDatagram: (datagram: Buffer, source: Source) => onDatagram(datagram, source, loop),
    receivePacket() {},
  } as unknown as FastPath;
  loop.start(fast);
  return { socket, counters, loop };
}

test("packet loop receives empty and maximum datagrams", async (t) => {
  const lengths: number[] = [];
  const { socket } = startLoop(t, (datagram) => lengths.push(datagram.length));
  const v4 = await peer(t, "udp4", "127.0.0.1");
  const v6 = await peer(t, "udp6", "::1");
  await sendTo(v4, Buffer.alloc(0), socket.port, "127.0.0.1");
  await sendTo(v4, Buffer.alloc(1, 7), socket.port, "127.0.0.1");
  await sendTo(v4, Buffer.alloc(65_507, 7), socket.port, "127.0.0.1");
  // Over IPv6 a UDP payload may be 65,527 bytes.
  await sendTo(v6, Buffer.alloc(65_527, 7), socket.port, "::1");
  await waitFor("four datagrams", () => lengths.length === 4);
  assert.deepEqual(lengths, [0, 1, 65_507, 65_527]);
});

test("packet loop sends large datagrams whole in a batch", async (t) => {
  const sink = await peer(t, "udp6", "::1");
  const to: Endpoint = { address: "::1", port: sink.address().port };
  const sizes: number[] = [];
  sink.on("message", (m) => sizes.push(m.length));
  const { socket, counters } = startLoop(t, (_datagram, _source, loop) => {
    // Larger than one IPv4 datagram, but a valid IPv6 one.
    loop.sendUdp(Buffer.alloc(65_527, 1), to);
    loop.sendUdp(Buffer.alloc(100, 2), to);
    // Larger than any UDP datagram: the send must fail, not be cut short.
    loop.sendUdp(Buffer.alloc(70_000, 3), to);
    loop.sendUdp(Buffer.alloc(100, 4), to);
  });
  const trigger = await peer(t, "udp4", "127.0.0.1");
  await sendTo(trigger, "go", socket.port, "127.0.0.1");
  await waitFor("the datagrams that fit", () => sizes.length >= 3);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(sizes, [65_527, 100, 100]);
  assert.equal(counters.get("send.errors"), 1);
});

test("packet loop sends empty datagrams in a batch", async (t) => {
  const sink = await peer(t, "udp4", "127.0.0.1");
  const to: Endpoint = { address: "127.0.0.1", port: sink.address().port };
  const sizes: number[] = [];
  sink.on("message", (m) => sizes.push(m.length));
  const { socket } = startLoop(t, (_datagram, _source, loop) => {
    for (let i = 0; i < 3; i++) loop.sendUdp(Buffer.alloc(0), to);
  });
  const trigger = await peer(t, "udp4", "127.0.0.1");
  await sendTo(trigger, "go", socket.port, "127.0.0.1");
  await waitFor("a datagram", () => sizes.length >= 1);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(sizes, [0, 0, 0]);
});

test("failed batch to port 0 keeps segmentation", async (t) => {
  const sink = await peer(t, "udp4", "127.0.0.1");
  const good: Endpoint = { address: "127.0.0.1", port: sink.address().port };
  const bad: Endpoint = { address: "127.0.0.1", port: 0 };
  const received: string[] = [];
  sink.on("message", (m) => received.push(m.toString().replace(/x+$/, "")));
  const { socket, counters } = startLoop(t, (datagram, _source, loop) => {
    const round = datagram.toString();
    // Linux rejects destination port 0 with EINVAL, as it does a segment too large for the route.
    if (round === "bad") for (let i = 0; i < 3; i++) loop.sendUdp(Buffer.alloc(100, 0x78), bad);
    else for (let i = 0; i < 3; i++) loop.sendUdp(Buffer.from(`${round}-${i}`.padEnd(100, "x")), good);
  });
  const trigger = await peer(t, "udp4", "127.0.0.1");
  await sendTo(trigger, "bad", socket.port, "127.0.0.1");
  await waitFor("the failed sends", () => counters.get("send.errors") === 3);
  await sendTo(trigger, "good", socket.port, "127.0.0.1");
  await waitFor("the good batch", () => received.length === 3);
  assert.deepEqual(received, ["good-0", "good-1", "good-2"]);
  assert.equal(counters.get("send.segmented"), 3, "a destination error disabled segmentation of 100-byte datagrams");
});

test("ICMP port unreachable leaves receive intact", async (t) => {
  const lengths: number[] = [];
  const { socket, counters, loop } = startLoop(t, (datagram) => lengths.push(datagram.length));
  // The kernel sends ICMP port unreachable for a port that was bound a moment ago and is closed now.
  const closed = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => closed.bind(0, "127.0.0.1", () => resolve()));
  const closedPort = closed.address().port;
  closed.close();
  const closed6 = dgram.createSocket({ type: "udp6", ipv6Only: true });
  await new Promise<void>((resolve) => closed6.bind(0, "::1", () => resolve()));
  const closedPort6 = closed6.address().port;
  closed6.close();
  for (let i = 0; i < 5; i++) {
    loop.sendUdp(Buffer.from("x"), { address: "127.0.0.1", port: closedPort });
    loop.sendUdp(Buffer.from("x"), { address: "::1", port: closedPort6 });
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  const sender = await peer(t, "udp4", "127.0.0.1");
  await sendTo(sender, "after", socket.port, "127.0.0.1");
  await waitFor("the datagram after the errors", () => lengths.length === 1);
  assert.equal(counters.get("send.errors"), 0);
  assert.equal(counters.get("receive.errors"), 0);
});

test("packet loop keeps up with many sources", async (t) => {
  const sources: Source[] = [];
  const { socket } = startLoop(t, (_datagram, source) => sources.push(source));
  const senders: dgram.Socket[] = [];
  for (let i = 0; i < 200; i++) senders.push(await peer(t, i % 2 ? "udp4" : "udp6", i % 2 ? "127.0.0.1" : "::1"));
  // Every source twice, interleaved: A B C ... A B C.
  for (let round = 0; round < 2; round++) {
    for (const [i, s] of senders.entries()) await sendTo(s, "x", socket.port, i % 2 ? "127.0.0.1" : "::1");
  }
  await waitFor("every datagram", () => sources.length === 400);
  for (const [i, s] of senders.entries()) {
    const expected = { kind: "direct", endpoint: { address: i % 2 ? "127.0.0.1" : "::1", port: s.address().port } };
    assert.deepEqual(sources[i], expected);
    assert.deepEqual(sources[200 + i], expected);
  }
});

test("unsegmented datagram keeps batch order", { skip: process.getuid?.() !== 0 && "needs root for a network namespace" }, (t) => {
  const result = runWithSmallMtu(t, "cyorder", "segment-order.ts") as { arrived: string[] };
  assert.deepEqual(result.arrived, ["big-0", "big-1", "a", "b", "big-2", "c"]);
});
