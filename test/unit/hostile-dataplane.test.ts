// Hostile input and faults against the dataplane. The fast path gets junk,
// forged and relayed datagrams in memory, and an engine gets a peer that
// sends from UDP port 0. A real worker process on loopback hangs, stops,
// restarts and is flooded while the control plane stalls.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { FastPath } from "../../firmware/src/dataplane/fast-path.js";
import { COUNTER_BLOCK, CarriedPeerInfo, FromWorker } from "../../firmware/src/dataplane/ipc.js";
import { DataplaneSupervisor } from "../../firmware/src/dataplane/supervisor.js";
import { INITIATION_MIN_BYTES, RESPONSE_MIN_BYTES, TRANSPORT_HEADER_BYTES } from "../../firmware/src/protocol/constants.js";
import { TAG_BYTES, generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { Endpoint } from "../../firmware/src/protocol/endpoint.js";
import { SessionState, TransportSession } from "../../firmware/src/protocol/session.js";
import { SignalType, encodeSignal } from "../../firmware/src/protocol/signaling.js";
import { Source } from "../../firmware/src/transport/path.js";
import { Peer } from "../../firmware/src/transport/peer.js";
import { SecureEndpoint } from "../../firmware/src/transport/secure-endpoint.js";
import { bindUdp } from "../../firmware/src/transport/udp.js";
import { logger } from "../../firmware/src/util/log.js";
import { MAIN, ipv4Packet, setupWorker, waitFor } from "./fixtures/dataplane.js";

const log = logger("test");

const LOCAL_IP = 0x64400001; // 100.64.0.1
const REMOTE_IP = 0x64400002; // 100.64.0.2
const TRS_ENDPOINT = { address: "198.18.0.1", port: 7000 };
const PEER_ENDPOINT = { address: "198.18.0.20", port: 7000 };
const TRS_KEY_HEX = "77".repeat(32);

function direct(endpoint: Endpoint): Source {
  return { kind: "direct", endpoint };
}

/** Creates both ends of one session: the state the worker carries, and the remote end that encrypts towards it. */
function sessionPair(localIndex: number) {
  const toLocal = randomBytes(32);
  const toRemote = randomBytes(32);
  const remoteIndex = localIndex + 0x10000;
  const state = (own: number, other: number, sendKey: Buffer, receiveKey: Buffer): SessionState => ({
    localIndex: own,
    remoteIndex: other,
    sendKey,
    receiveKey,
    remoteStatic: Buffer.alloc(32),
    isInitiator: true,
    createdMs: Date.now(),
    confirmed: true,
    sendCounter: 0n,
    window: { highest: -1n, bitmap: new Uint32Array(64) },
  });
  return {
    local: state(localIndex, remoteIndex, toRemote, toLocal),
    remote: TransportSession.fromState(state(remoteIndex, localIndex, toLocal, toRemote)),
  };
}

/** Creates a fast path in memory that records what it sends, writes to the TUN device and reports. */
function fastPath() {
  const sent: { datagram: Buffer; to: Endpoint }[] = [];
  const tun: Buffer[] = [];
  const control: FromWorker[] = [];
  const fast = new FastPath({ sendUdp: (datagram, to) => sent.push({ datagram, to }), writeTun: (p) => tun.push(p), toControl: (m) => control.push(m) });
  const carry = (info: CarriedPeerInfo, localIndex: number) => {
    const pair = sessionPair(localIndex);
    fast.control({ t: "peer", info: { ...info, current: localIndex } });
    fast.control({ t: "session", peer: info.id, state: pair.local, limit: COUNTER_BLOCK });
    return pair.remote;
  };
  return { fast, sent, tun, control, carry };
}

function relayData(routeId: number, datagram: Buffer): Buffer {
  return encodeSignal({ type: SignalType.RelayData, routeId, datagram });
}

test("short handshake junk stays in the worker", () => {
  const { fast, control } = fastPath();
  const source = direct(PEER_ENDPOINT);
  const junk = [
    Buffer.from([1, 0, 0, 0]),
    Buffer.alloc(INITIATION_MIN_BYTES - 1, 1),
    Buffer.from([2, 0, 0, 0]),
    Buffer.alloc(RESPONSE_MIN_BYTES - 1, 2),
  ];
  for (const datagram of junk) fast.receiveDatagram(datagram, source);
  assert.deepEqual(
    control.map((m) => m.t),
    [],
    "handshake messages too short to be valid must be counted as short, not sent over IPC",
  );
  assert.equal(fast.counters.get("drop.short"), junk.length);
});

test("truncated transport headers are short", () => {
  const { fast, control, carry } = fastPath();
  carry({ id: 1, group: 1, keyHex: "aa", path: direct(PEER_ENDPOINT), current: null, tunnel: null, relay: false }, 0x100);
  let count = 0;
  for (let length = 4; length < TRANSPORT_HEADER_BYTES + TAG_BYTES; length++) {
    const datagram = Buffer.alloc(length);
    datagram[0] = 4;
    if (length >= 8) datagram.writeUInt32BE(0x100, 4);
    fast.receiveDatagram(datagram, direct(PEER_ENDPOINT));
    count++;
  }
  assert.equal(fast.counters.get("drop.short"), count);
  assert.equal(control.length, 0);
});

test("wrong-key datagram leaves window and path", () => {
  const { fast, tun, control, carry } = fastPath();
  const remote = carry({ id: 1, group: 1, keyHex: "aa", path: direct(PEER_ENDPOINT), current: null, tunnel: { local: LOCAL_IP, remote: REMOTE_IP }, relay: false }, 0x100);
  const forger = sessionPair(0x100).remote;
  // A forged datagram with a high counter comes from another endpoint. If it
  // moved the window or the path, the real counter 0 below would be rejected
  // or the reply would go to the forger.
  const forged = forger.encrypt(ipv4Packet(REMOTE_IP, LOCAL_IP), Date.now());
  forged.writeBigUInt64BE(1n << 40n, 8);
  fast.receiveDatagram(forged, direct({ address: "203.0.113.66", port: 4444 }));
  assert.equal(fast.counters.get("drop.decrypt_failed"), 1);
  assert.equal(control.length, 0, "a forged datagram reports nothing");

  fast.receiveDatagram(remote.encrypt(ipv4Packet(REMOTE_IP, LOCAL_IP), Date.now()), direct(PEER_ENDPOINT));
  assert.equal(tun.length, 1, "counter 0 is still accepted");
  assert.deepEqual(
    control.map((m) => m.t),
    ["authenticated"],
  );
});

test("RelayData from a tunnel peer is not unwrapped", () => {
  const { fast, tun, control, carry } = fastPath();
  const tunnelRemote = carry({ id: 1, group: 1, keyHex: "aa", path: direct(PEER_ENDPOINT), current: null, tunnel: { local: LOCAL_IP, remote: REMOTE_IP }, relay: false }, 0x100);
  const inner = tunnelRemote.encrypt(ipv4Packet(REMOTE_IP, LOCAL_IP), Date.now());
  // The tunnel peer wraps its own datagram, as if it were the relay.
  fast.receiveDatagram(tunnelRemote.encrypt(relayData(9, inner), Date.now()), direct(PEER_ENDPOINT));
  assert.equal(tun.length, 0);
  const last = control.at(-1);
  assert.equal(last?.t, "plaintext", "the control plane decides about signaling from a tunnel peer");
});

test("relayed datagram for another group is dropped", () => {
  // An adapter hosts one member per general node. Each member has its own
  // session with the TRS (same key, another group). In the control plane a
  // relayed datagram goes to the engine of the member whose TRS session
  // carried it, so a session of another member is unknown there.
  const { fast, tun, control, carry } = fastPath();
  const trsOfGroup1 = carry({ id: 1, group: 1, keyHex: TRS_KEY_HEX, path: direct(TRS_ENDPOINT), current: null, tunnel: null, relay: true }, 0x100);
  carry({ id: 2, group: 2, keyHex: TRS_KEY_HEX, path: direct(TRS_ENDPOINT), current: null, tunnel: null, relay: true }, 0x200);
  const tunnelOfGroup2 = carry(
    { id: 3, group: 2, keyHex: "33", path: { kind: "relay", routeId: 7, relayKey: TRS_KEY_HEX }, current: null, tunnel: { local: LOCAL_IP, remote: REMOTE_IP }, relay: false },
    0x300,
  );
  const inner = tunnelOfGroup2.encrypt(ipv4Packet(REMOTE_IP, LOCAL_IP), Date.now());
  fast.receiveDatagram(trsOfGroup1.encrypt(relayData(99, inner), Date.now()), direct(TRS_ENDPOINT));
  assert.equal(tun.length, 0, "group 1's relay route delivered into group 2's tunnel");
  const moved = control.find((m) => m.t === "authenticated" && m.index === 0x300);
  assert.equal(moved, undefined, "group 2's tunnel was moved onto group 1's relay route 99");
});

test("relayed handshake reaches control with relay source", () => {
  const { fast, control, carry } = fastPath();
  const trs = carry({ id: 1, group: 1, keyHex: TRS_KEY_HEX, path: direct(TRS_ENDPOINT), current: null, tunnel: null, relay: true }, 0x100);
  const initiation = Buffer.alloc(INITIATION_MIN_BYTES, 0xab);
  initiation[0] = 1;
  fast.receiveDatagram(trs.encrypt(relayData(5, initiation), Date.now()), direct(TRS_ENDPOINT));
  const forwarded = control.find((m): m is Extract<FromWorker, { t: "datagram" }> => m.t === "datagram");
  assert.ok(forwarded);
  assert.deepEqual(forwarded.source, { kind: "relay", routeId: 5, relayKey: TRS_KEY_HEX });
  assert.deepEqual(forwarded.datagram, initiation);
});

test("deeply nested relay data is handled", () => {
  // Only the TRS can nest, because each layer is encrypted on its session.
  // 1,600 layers come close to the largest UDP payload (65,507 bytes).
  const { fast, tun, carry } = fastPath();
  const trs = carry({ id: 1, group: 1, keyHex: TRS_KEY_HEX, path: direct(TRS_ENDPOINT), current: null, tunnel: null, relay: true }, 0x100);
  const tunnelRemote = carry(
    { id: 2, group: 1, keyHex: "33", path: { kind: "relay", routeId: 7, relayKey: TRS_KEY_HEX }, current: null, tunnel: { local: LOCAL_IP, remote: REMOTE_IP }, relay: false },
    0x200,
  );
  let datagram = tunnelRemote.encrypt(ipv4Packet(REMOTE_IP, LOCAL_IP), Date.now());
  for (let layer = 0; layer < 1_600; layer++) datagram = trs.encrypt(relayData(7, datagram), Date.now());
  assert.ok(datagram.length < 65_507, `${datagram.length} bytes`);
  assert.doesNotThrow(() => fast.receiveDatagram(datagram, direct(TRS_ENDPOINT)));
  assert.equal(tun.length, 1);
  assert.equal(fast.counters.get("transport.received"), 1_601);
});

test("engine tick survives peer on port 0", async (t) => {
  // Linux delivers UDP datagrams with source port 0 (a raw socket can send
  // them, and an on-path attacker can rewrite the unauthenticated UDP header
  // of a real datagram). Node's dgram send() then throws synchronously, and
  // tick() runs in a setInterval, so a throw there ends a cloud service.
  const socket = await bindUdp(0, () => {}, () => {}, "127.0.0.1");
  t.after(() => socket.close());
  let nowMs = Date.now();
  const keysA = generateKeyPair();
  const keysB = generateKeyPair();
  let sourceOfA: Endpoint = { address: "127.0.0.1", port: 40_001 };
  let a: SecureEndpoint<string> | null = null;
  const service: SecureEndpoint<string> = new SecureEndpoint<string>(
    keysB,
    (datagram, to) => {
      assert.equal(to.kind, "direct");
      if (to.kind === "direct") socket.send(datagram, to.endpoint);
      a?.receive(datagram, direct({ address: "127.0.0.1", port: socket.port }));
    },
    {
      acceptInitiation: (key) => ({ peer: service.peer(key) ?? service.addPeer(new Peer(key, null, "a", false)) }),
      onMessage: () => {},
    },
    log,
    () => nowMs,
  );
  a = new SecureEndpoint<string>(keysA, (datagram) => service.receive(datagram, direct(sourceOfA)), { acceptInitiation: () => ({ reject: "unknown_peer" }), onMessage: () => {} }, log, () => nowMs);
  const peerB = a.addPeer(new Peer(keysB.publicKey, { kind: "direct", endpoint: { address: "127.0.0.1", port: socket.port } }, "b", true));
  a.send(peerB, Buffer.from([0x70]));
  assert.equal(service.counters.get("transport.received"), 2, "handshake done, first message in");

  // A keep-alive from port 0, then nothing: 10 s later the service owes a passive keep-alive.
  nowMs += 100;
  sourceOfA = { address: "127.0.0.1", port: 0 };
  a.sendKeepalive(peerB);
  nowMs += 11_000;
  assert.doesNotThrow(() => service.tick());
});

/** Waits until count() has not changed for stableMs, or until timeoutMs, and returns its last value. */
async function settled(count: () => number, stableMs = 1_000, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = count();
  let since = Date.now();
  while (Date.now() < deadline) {
    await sleep(100);
    const now = count();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= stableMs) {
      return now;
    }
  }
  return last;
}

function udpSender(t: { after(fn: () => void): void }): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  t.after(() => socket.close());
  return new Promise((resolve) => socket.bind(0, "127.0.0.1", () => resolve(socket)));
}

/** Kills processes whose PIDs the wrapper recorded in dir, if they still run the wrapper. */
function killRecordedWorkers(dir: string, wrapper: string): void {
  for (const name of fs.readdirSync(dir)) {
    if (!name.endsWith(".pid")) continue;
    const pid = Number(fs.readFileSync(path.join(dir, name), "utf8"));
    let cmdline = "";
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (cmdline.includes(wrapper)) process.kill(pid, "SIGKILL");
  }
}

test("worker hung before ready is replaced", async (t) => {
  // The second worker stops itself before it binds the port, as one stuck in
  // start-up would. The supervisor counts heartbeats only once a worker is
  // ready, so nothing notices it.
  const dir = fs.mkdtempSync(path.join(tmpdir(), "cyphonic-hang-"));
  const wrapper = path.join(dir, "worker-wrapper.mjs");
  const startsFile = path.join(dir, "starts");
  fs.writeFileSync(
    wrapper,
    [
      `import fs from "node:fs";`,
      `const starts = (fs.existsSync(${JSON.stringify(startsFile)}) ? Number(fs.readFileSync(${JSON.stringify(startsFile)}, "utf8")) : 0) + 1;`,
      `fs.writeFileSync(${JSON.stringify(startsFile)}, String(starts));`,
      `fs.writeFileSync(${JSON.stringify(dir)} + "/worker-" + starts + ".pid", String(process.pid));`,
      `if (starts === 2) process.kill(process.pid, "SIGSTOP");`,
      `await import(${JSON.stringify(pathToFileURL(MAIN).href)});`,
    ].join("\n"),
  );
  t.after(() => {
    killRecordedWorkers(dir, wrapper);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const setup = await setupWorker(wrapper);
  try {
    await setup.exchange(1);
    const firstPid = setup.dataplane.status().pid!;
    process.kill(firstPid, "SIGKILL");
    await waitFor("the second worker to start", () => fs.existsSync(path.join(dir, "worker-2.pid")));
    const ready = await waitFor(
      "a ready worker after the hung one",
      () => {
        const pid = setup.dataplane.status().pid;
        return pid && pid !== firstPid ? pid : null;
      },
      20_000,
    ).catch(() => null);
    assert.ok(ready, `no worker was ready 20 s after the second one hung: ${JSON.stringify(setup.dataplane.status())}`);
    await setup.exchange(2);
  } finally {
    setup.close();
  }
});

/**
 * Sends datagrams to port from another process, in bursts of 10 per
 * millisecond (slow enough for the worker to read them all), alternating
 * between `sources` sockets. spawnSync blocks this process meanwhile, so the
 * control plane in it reads nothing from the worker: it stalls.
 */
function floodWhileStalled(port: number, datagrams: Buffer[], sources = 1): void {
  const framed: Buffer[] = [];
  for (const datagram of datagrams) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(datagram.length);
    framed.push(length, datagram);
  }
  const flood = `
    const dgram = require("node:dgram");
    const input = require("node:fs").readFileSync(0);
    const datagrams = [];
    for (let offset = 0; offset < input.length; ) {
      const length = input.readUInt32BE(offset);
      datagrams.push(input.subarray(offset + 4, offset + 4 + length));
      offset += 4 + length;
    }
    const sockets = Array.from({ length: ${sources} }, () => dgram.createSocket("udp4"));
    let next = 0;
    const burst = () => {
      for (let k = 0; k < 10 && next < datagrams.length; k++, next++) sockets[next % sockets.length].send(datagrams[next], ${port}, "127.0.0.1");
      if (next < datagrams.length) setTimeout(burst, 1);
      else setTimeout(() => sockets.forEach((s) => s.close()), 500);
    };
    burst();`;
  const run = spawnSync(process.execPath, ["-e", flood], { input: Buffer.concat(framed), encoding: "utf8", timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
}

test("plaintext flood during control stall is bounded", async () => {
  // A peer with a session sends datagrams whose plaintext the worker hands to
  // the control plane (signaling, or anything not an IPv4 packet on a
  // tunnel) while the control plane stalls. The worker must drop what the
  // IPC channel cannot take, as it does for handshakes, instead of queueing
  // every message in its memory.
  const floodCount = 3_000;
  const plaintextBytes = 4_000;
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const session = setup.sessionOfB();
    const datagrams = Array.from({ length: floodCount }, () => session.encrypt(Buffer.alloc(plaintextBytes, 0x70), Date.now()));
    const before = setup.plaintextsAtControl();
    floodWhileStalled(setup.dataplane.port, datagrams);

    const delivered = (await settled(() => setup.plaintextsAtControl())) - before;
    const decrypted = setup.dataplane.countersSnapshot()["transport.received"] ?? 0;
    assert.ok(decrypted >= floodCount / 2, `the worker decrypted only ${decrypted} of ${floodCount}, so the flood did not arrive`);
    assert.ok(
      delivered <= floodCount / 4,
      `the worker queued ${delivered} of ${floodCount} plaintexts (${(delivered * plaintextBytes) / 1e6} MB) for a stalled control plane`,
    );
  } finally {
    setup.close();
  }
});

test("path-move flood during control stall is bounded", async () => {
  // Empty keep-alives, 48 bytes on the wire, alternate between two source
  // ports. Each one moves the peer, and the worker reports every move to the
  // stalled control plane, which sends a peer update back for each.
  const floodCount = 4_000;
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const session = setup.sessionOfB();
    const datagrams = Array.from({ length: floodCount }, () => session.encrypt(Buffer.alloc(0), Date.now()));
    const pathChanges = () => setup.a.engine.counters.get("peer.path_changes");
    const before = pathChanges();
    floodWhileStalled(setup.dataplane.port, datagrams, 2);

    const reported = (await settled(pathChanges)) - before;
    const received = setup.dataplane.countersSnapshot()["transport.keepalives_received"] ?? 0;
    assert.ok(received >= floodCount / 2, `the worker received only ${received} of ${floodCount} keep-alives, so the flood did not arrive`);
    assert.ok(reported <= floodCount / 4, `the worker queued ${reported} path moves of ${floodCount} keep-alives for a stalled control plane`);
  } finally {
    setup.close();
  }
});

test("replays after restart only from last heartbeat", async (t) => {
  // The new worker's replay window is the one the last heartbeat reported.
  // Datagrams accepted before that report must be rejected when replayed.
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const session = setup.sessionOfB();
    const old: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const datagram = session.encrypt(Buffer.from([0x70, i]), Date.now());
      old.push(datagram);
      // From B's own socket, so the peer stays on B's path.
      setup.b.mux.send(datagram, { address: "127.0.0.1", port: setup.dataplane.port });
    }
    await waitFor("the first batch", () => setup.plaintextsAtControl() === 20);
    // Four heartbeats, so a report that contains the first batch has arrived.
    await sleep(1_000);

    const firstPid = setup.dataplane.status().pid!;
    process.kill(firstPid, "SIGKILL");
    await waitFor("a new worker", () => {
      const pid = setup.dataplane.status().pid;
      return pid && pid !== firstPid ? pid : null;
    });
    // An attacker replays from its own address, which would also move the peer there.
    const attacker = await udpSender(t);
    for (const datagram of old) attacker.send(datagram, setup.dataplane.port, "127.0.0.1");
    const after = await settled(() => setup.plaintextsAtControl());
    assert.equal(after - 20, 0, "datagrams from before the last heartbeat were accepted again");
    await setup.exchange(2);
  } finally {
    setup.close();
  }
});

test("stopped then continued worker is kept", async () => {
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const pid = setup.dataplane.status().pid!;
    // Three heartbeats go unanswered, fewer than the six that condemn a worker.
    process.kill(pid, "SIGSTOP");
    await sleep(750);
    process.kill(pid, "SIGCONT");
    await setup.exchange(2);
    await sleep(1_000);
    assert.equal(setup.dataplane.status().pid, pid);
    assert.equal(setup.dataplane.status().restarts, 0);
    assert.equal(setup.dataplane.countersSnapshot()["dataplane.hangs"] ?? 0, 0);
  } finally {
    setup.close();
  }
});

test("first start failure rejects start", async (t) => {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "cyphonic-start-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const exits = path.join(dir, "exits.mjs");
  fs.writeFileSync(exits, "process.exit(3);\n");
  const supervisor = (modulePath: string, port: number) =>
    new DataplaneSupervisor({ port, tun: null, roleOf: () => ({ tunnel: null, relay: false }), onDatagram: () => {}, onPacket: () => {}, log, command: { modulePath, args: [] } });

  const exiting = supervisor(exits, 0);
  await assert.rejects(exiting.start(), /^Error: dataplane worker exited with code 3 before it was ready$/);
  assert.equal(exiting.status().pid, null);
  assert.equal(exiting.status().restarts, 0, "a failed first start is not restarted");

  // The worker binds "::" (dual stack), so a dual-stack socket on the port blocks it.
  const blocker = dgram.createSocket({ type: "udp6", ipv6Only: false });
  t.after(() => blocker.close());
  await new Promise<void>((resolve) => blocker.bind(0, "::", () => resolve()));
  const port = blocker.address().port;
  const blocked = supervisor(MAIN, port);
  await assert.rejects(blocked.start(), new RegExp(`^Error: dataplane worker could not start: binding UDP port ${port} on \\[::\\] failed: bind\\(\\) returned EADDRINUSE: another socket holds the port$`));
  assert.equal(blocked.status().restarts, 0);
});

test("restarts leak no handles", async () => {
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const handlesBefore = process.getActiveResourcesInfo().sort();
    let pid = setup.dataplane.status().pid!;
    // Restarts wait 0, 0.5, 1 and 2 s.
    for (let i = 0; i < 4; i++) {
      process.kill(pid, "SIGKILL");
      const old = pid;
      pid = await waitFor("a new worker", () => {
        const next = setup.dataplane.status().pid;
        return next && next !== old ? next : null;
      });
    }
    await setup.exchange(2);
    await sleep(300);
    assert.deepEqual(process.getActiveResourcesInfo().sort(), handlesBefore);
    assert.equal(setup.dataplane.status().restarts, 4);
    assert.equal(setup.b.engine.counters.get("handshake.responses_sent"), 1, "no new handshake");
    assert.equal(setup.b.engine.counters.get("drop.replay"), 0, "no counter was used twice");
  } finally {
    setup.close();
  }
});

/**
 * Floods port from another process for durationMs without blocking this one:
 * junk of every kind (random bytes, unknown transport indexes, empty
 * datagrams, forged initiations) from `sources` sockets, in bursts of 64 each millisecond.
 */
function floodJunk(port: number, durationMs: number, sources: number): Promise<number> {
  const flood = `
    const dgram = require("node:dgram");
    const { randomBytes } = require("node:crypto");
    const sockets = Array.from({ length: ${sources} }, () => dgram.createSocket("udp4"));
    const junk = [Buffer.alloc(0), Buffer.from([4]), randomBytes(1400), randomBytes(60), randomBytes(65_507)];
    for (let i = 0; i < 32; i++) {
      const transport = randomBytes(32 + ((i * 97) % 1400));
      transport[0] = 4;
      junk.push(transport);
    }
    // Initiations of the right size, which the worker forwards to the control plane unchecked.
    for (let i = 0; i < 4; i++) {
      const initiation = randomBytes(${INITIATION_MIN_BYTES});
      initiation[0] = 1;
      junk.push(initiation);
    }
    let sent = 0;
    const end = Date.now() + ${durationMs};
    const burst = () => {
      for (let k = 0; k < 64; k++, sent++) sockets[sent % sockets.length].send(junk[sent % junk.length], ${port}, "127.0.0.1");
      if (Date.now() < end) setTimeout(burst, 1);
      else setTimeout(() => { sockets.forEach((s) => s.close()); console.log(sent); }, 200);
    };
    burst();`;
  const child = spawn(process.execPath, ["-e", flood], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  return new Promise((resolve, reject) => child.on("exit", (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`flood exited with ${code}`)))));
}

function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match![1]) * 1024;
}

test("junk flood keeps heartbeats answered", async () => {
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const pid = setup.dataplane.status().pid!;
    const rssBefore = residentBytes(pid);
    // The supervisor's time of the last heartbeat reply, sampled every 10 ms.
    const lastPong = () => (setup.dataplane as unknown as { lastPongMs: number }).lastPongMs;
    let maxGapMs = 0;
    const sampler = setInterval(() => (maxGapMs = Math.max(maxGapMs, Date.now() - lastPong())), 10);
    let rssPeak = rssBefore;
    const rssSampler = setInterval(() => (rssPeak = Math.max(rssPeak, residentBytes(pid))), 100);
    let sent: number;
    try {
      sent = await floodJunk(setup.dataplane.port, 4_000, 512);
    } finally {
      clearInterval(sampler);
      clearInterval(rssSampler);
    }
    await setup.exchange(2);

    const counters = setup.dataplane.countersSnapshot();
    const dropped = Object.entries(counters)
      .filter(([name]) => name.startsWith("drop."))
      .reduce((sum, [, count]) => sum + count, 0);
    assert.ok(dropped >= sent / 4, `the worker dropped ${dropped} of ${sent} junk datagrams, so the flood did not arrive`);
    assert.equal(setup.dataplane.status().pid, pid, "the worker was replaced during the flood");
    assert.equal(setup.dataplane.status().restarts, 0);
    assert.equal(counters["dataplane.hangs"] ?? 0, 0);
    // Pings leave every 250 ms, so a gap under 750 ms means at most two late replies, and six condemn a worker.
    assert.ok(maxGapMs < 750, `the longest time without a heartbeat reply was ${maxGapMs} ms`);
    assert.ok(rssPeak - rssBefore < 64 * 1024 * 1024, `the worker grew by ${((rssPeak - rssBefore) / 1e6).toFixed(1)} MB under the flood`);
    console.log(JSON.stringify({ sent, dropped, maxGapMs, rssBeforeMB: rssBefore / 1e6, rssPeakMB: rssPeak / 1e6 }));
  } finally {
    setup.close();
  }
});

test("worker stopped under flood is kept", async () => {
  // While the worker is stopped, the flood fills its 4 MiB receive buffer.
  // After SIGCONT it must reply to the waiting heartbeats before it has
  // worked through that backlog.
  const setup = await setupWorker();
  try {
    await setup.exchange(1);
    const pid = setup.dataplane.status().pid!;
    const flood = floodJunk(setup.dataplane.port, 2_500, 64);
    await sleep(500);
    // Three heartbeats go unanswered, fewer than the six that condemn a worker.
    process.kill(pid, "SIGSTOP");
    await sleep(750);
    process.kill(pid, "SIGCONT");
    await flood;
    await setup.exchange(2);
    assert.equal(setup.dataplane.status().pid, pid);
    assert.equal(setup.dataplane.status().restarts, 0);
    assert.equal(setup.dataplane.countersSnapshot()["dataplane.hangs"] ?? 0, 0);
  } finally {
    setup.close();
  }
});
