// Route selection at the NMS over loopback: two provisioned nodes register,
// one requests a route to the other, and both ends learn the same stored route.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { NodeManagementService } from "../../firmware/src/cloud/nms.js";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { KeyPair, generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { Signal, SignalType } from "../../firmware/src/protocol/signaling.js";
import { Peer } from "../../firmware/src/transport/peer.js";
import { SignalChannel } from "../../firmware/src/transport/signal-channel.js";
import { logger } from "../../firmware/src/util/log.js";

const LOOPBACK = "127.0.0.1";

async function startNms(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), "cyphonic-nms-routes-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "cloud.db");
  const store = new CloudStore(path, { overlayDomain: "overlay.test", pool: { cidr: "100.64.0.0/16", reserved: [] } });
  t.after(() => store.close());
  const nmsKeys = generateKeyPair();
  const trs = { endpoints: [{ address: LOOPBACK, port: 9 }], staticKey: generateKeyPair().publicKey };
  const nms = new NodeManagementService({ store, identity: nmsKeys, trs, keepaliveIntervalMs: 5_000 });
  const nmsPort = await nms.listen(0, LOOPBACK);
  t.after(() => nms.close());
  return { path, store, nms, nmsKeys, nmsPort };
}

/** Provisions node `name` and opens its session with the NMS. It acknowledges route instructions as a node does. */
async function startNode(t: TestContext, nms: Awaited<ReturnType<typeof startNms>>, name: string) {
  const keys: KeyPair = generateKeyPair();
  const record = nms.store.createNode(name, "node");
  nms.store.redeemToken(nms.store.createToken(record.id, 60_000).secret, keys.publicKey);
  const received: Signal[] = [];
  const channel: SignalChannel<null> = new SignalChannel<null>(
    keys,
    {
      acceptInitiation: () => ({ reject: "unknown_peer" }),
      onSignal: (peer, signal) => {
        received.push(signal);
        if (signal.type === SignalType.RouteInstruction) channel.signal(peer, { type: SignalType.RouteInstructionAck, instructionId: signal.instructionId });
      },
    },
    logger("test"),
  );
  await channel.listen(0, LOOPBACK);
  t.after(() => channel.close());
  const peer = channel.engine.addPeer(new Peer<null>(nms.nmsKeys.publicKey, { kind: "direct", endpoint: { address: LOOPBACK, port: nms.nmsPort } }, null, true));
  const waitFor = async (match: (s: Signal) => boolean, timeoutMs = 3_000): Promise<Signal | undefined> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = received.find(match);
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return undefined;
  };
  return { record, send: (s: Signal) => channel.signal(peer, s), waitFor };
}

test("NMS route reaches both ends", async (t) => {
  const nms = await startNms(t);
  const alice = await startNode(t, nms, "alice");
  const bob = await startNode(t, nms, "bob");
  for (const [node, requestId] of [[alice, 1], [bob, 2]] as const) {
    node.send({ type: SignalType.Register, requestId, localEndpoints: [] });
    const registered = await node.waitFor((s) => s.type === SignalType.Registered);
    assert.ok(registered, `node ${node.record.name} registered`);
  }

  alice.send({ type: SignalType.RouteRequest, requestId: 10, target: { virtualIP: bob.record.virtualIP } });
  const response = await alice.waitFor((s) => s.type === SignalType.RouteResponse && s.requestId === 10);
  assert.ok(response?.type === SignalType.RouteResponse, `route response, got ${JSON.stringify(response)}`);
  assert.equal(response.route.peer.nodeId, bob.record.id);
  const instruction = await bob.waitFor((s) => s.type === SignalType.RouteInstruction);
  assert.ok(instruction?.type === SignalType.RouteInstruction, "route instruction at the other end");
  assert.equal(instruction.route.routeId, response.route.routeId);
  assert.equal(instruction.route.peer.nodeId, alice.record.id);

  // The route was stored before it was handed out, so another connection (a TRS process) finds it.
  const reader = new Database(nms.path, { readonly: true });
  t.after(() => reader.close());
  const row = reader.prepare<[number], { node_a: number; node_b: number }>("SELECT node_a, node_b FROM routes WHERE route_id = ?").get(response.route.routeId);
  assert.deepEqual(row, { node_a: alice.record.id, node_b: bob.record.id });
  assert.equal(nms.nms.channel.engine.counters.get("route.selected"), 1);
  assert.equal(nms.nms.channel.engine.counters.get("drop.internal_error"), 0);
});
