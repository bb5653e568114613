// The dataplane worker as a real child process on loopback: sessions survive
// its SIGKILL and SIGSTOP without a new handshake and without a reused
// counter, and a crash loop backs off.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { COUNTER_BLOCK } from "../../firmware/src/dataplane/ipc.js";
import { DataplaneSupervisor } from "../../firmware/src/dataplane/supervisor.js";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { SignalType } from "../../firmware/src/protocol/signaling.js";
import { EndpointMux } from "../../firmware/src/transport/endpoint-mux.js";
import { Peer } from "../../firmware/src/transport/peer.js";
import { SignalChannel } from "../../firmware/src/transport/signal-channel.js";
import { logger } from "../../firmware/src/util/log.js";

const log = logger("test");

async function waitFor<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function setup() {
  const keysA = generateKeyPair();
  const keysB = generateKeyPair();
  const mux = new EndpointMux(log);
  const dataplane = new DataplaneSupervisor({
    port: 0,
    tun: null,
    roleOf: () => ({ tunnel: null, relay: false }),
    onDatagram: (datagram, source) => mux.receive(datagram, source),
    onPacket: () => {},
    log,
    command: { modulePath: path.resolve("firmware/src/cli/main.ts"), args: [] },
  });
  mux.carrierFactory = (engine) => dataplane.carrierFor(engine);
  await dataplane.start();
  mux.adopt(dataplane);

  const acks: number[] = [];
  const a = new SignalChannel<string>(
    keysA,
    {
      acceptInitiation: () => ({ reject: "unknown_peer" }),
      onSignal: (_peer, signal) => {
        if (signal.type === SignalType.KeepaliveAck) acks.push(signal.seq);
      },
    },
    log,
    mux,
  );
  // B is a plain engine with its own socket, as a cloud service is.
  const b: SignalChannel<string> = new SignalChannel<string>(
    keysB,
    {
      acceptInitiation: (key): { peer: Peer<string> } | { reject: "unknown_peer" } => {
        if (!key.equals(keysA.publicKey)) return { reject: "unknown_peer" };
        return { peer: b.engine.peer(key) ?? b.engine.addPeer(new Peer(key, null, "a", false)) };
      },
      onSignal: (peer, signal, source) => {
        if (signal.type !== SignalType.Keepalive || source.kind !== "direct") return;
        b.signal(peer, { type: SignalType.KeepaliveAck, seq: signal.seq, observed: source.endpoint });
      },
    },
    log,
  );
  const bPort = await b.listen(0, "127.0.0.1");
  const peerB = a.engine.addPeer(new Peer(keysB.publicKey, { kind: "direct", endpoint: { address: "127.0.0.1", port: bPort } }, "b", true));
  const exchange = async (seq: number) => {
    a.signal(peerB, { type: SignalType.Keepalive, seq });
    await waitFor(`the answer to ${seq}`, () => acks.includes(seq));
  };
  const close = () => {
    a.close();
    b.close();
    mux.close();
    dataplane.close();
  };
  return { a, b, dataplane, exchange, close, keysA };
}

test("sessions outlive a killed and a stopped worker, with no new handshake", async () => {
  const t = await setup();
  try {
    await t.exchange(1);
    const firstPid = t.dataplane.status().pid!;
    assert.ok(firstPid > 0);

    process.kill(firstPid, "SIGKILL");
    const secondPid = await waitFor("a new worker", () => {
      const pid = t.dataplane.status().pid;
      return pid && pid !== firstPid ? pid : null;
    });
    await t.exchange(2);
    assert.match(t.dataplane.status().lastRecovery!.reason, /SIGKILL/);

    process.kill(secondPid, "SIGSTOP");
    const thirdPid = await waitFor("a worker after the hang", () => {
      const pid = t.dataplane.status().pid;
      return pid && pid !== secondPid ? pid : null;
    });
    await t.exchange(3);
    const recovery = t.dataplane.status().lastRecovery!;
    assert.equal(recovery.reason, "missed heartbeats");
    assert.ok(recovery.gapMs >= 1_250 && recovery.gapMs < 10_000, `gap ${recovery.gapMs} ms`);
    assert.notEqual(thirdPid, secondPid);

    // One handshake in all: B answered one initiation, A sent one.
    assert.equal(t.b.engine.counters.get("handshake.responses_sent"), 1);
    assert.equal(t.a.engine.counters.get("handshake.initiations_sent"), 1);
    assert.equal(t.dataplane.status().restarts, 2);
    // Each new worker started above every counter granted before, so B saw
    // counters past two blocks and never a replay.
    const bSession = t.b.engine.peer(t.keysA.publicKey)!.current!;
    assert.ok(bSession.usage().window.highest >= 2n * COUNTER_BLOCK, `highest counter ${bSession.usage().window.highest}`);
    assert.equal(t.b.engine.counters.get("drop.replay"), 0);
  } finally {
    t.close();
  }
});

test("a crash loop backs off: immediate, then 0.5, 1 and 2 s", async () => {
  const t = await setup();
  try {
    const delays: number[] = [];
    let pid = t.dataplane.status().pid!;
    for (let i = 0; i < 4; i++) {
      const killedAt = Date.now();
      process.kill(pid, "SIGKILL");
      await waitFor("the exit to be noticed", () => t.dataplane.status().restarts === i + 1);
      delays.push(t.dataplane.status().nextRestartDelayMs);
      const old = pid;
      pid = await waitFor("a new worker", () => {
        const p = t.dataplane.status().pid;
        return p && p !== old ? p : null;
      });
      assert.ok(Date.now() - killedAt >= delays[i]!, `restart ${i + 1} came before its delay`);
    }
    assert.deepEqual(delays, [0, 500, 1_000, 2_000]);
    assert.equal(t.dataplane.status().crashStreak, 4);
    await t.exchange(7);
  } finally {
    t.close();
  }
});
