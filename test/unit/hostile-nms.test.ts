// Hostile signaling from a provisioned node at the NMS, over loopback. These
// tests fail while a route request for a maximum-length FQDN makes the NMS
// build an error reply too long to encode: the node gets no reply and the NMS
// logs an internal error with a stack trace for every such request.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeManagementService } from "../../firmware/src/cloud/nms.js";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { MAX_FIELD_BYTES } from "../../firmware/src/protocol/codec.js";
import { Signal, SignalType } from "../../firmware/src/protocol/signaling.js";
import { Peer } from "../../firmware/src/transport/peer.js";
import { SignalChannel } from "../../firmware/src/transport/signal-channel.js";
import { logger } from "../../firmware/src/util/log.js";

const LOOPBACK = "127.0.0.1";

async function provisionedClient(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), "cyphonic-hostile-nms-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new CloudStore(join(dir, "cloud.db"), { overlayDomain: "overlay.test", pool: { cidr: "100.64.0.0/16", reserved: [] } });
  t.after(() => store.close());
  const nodeKeys = generateKeyPair();
  const node = store.createNode("hostile", "node");
  store.redeemToken(store.createToken(node.id, 60_000).secret, nodeKeys.publicKey);

  const nmsKeys = generateKeyPair();
  const trs = { endpoints: [{ address: LOOPBACK, port: 9 }], staticKey: generateKeyPair().publicKey };
  const nms = new NodeManagementService({ store, identity: nmsKeys, trs, keepaliveIntervalMs: 5_000 });
  const nmsPort = await nms.listen(0, LOOPBACK);
  t.after(() => nms.close());

  const received: Signal[] = [];
  const channel = new SignalChannel<null>(nodeKeys, {
    acceptInitiation: () => ({ reject: "unknown_peer" }),
    onSignal: (_peer, signal) => received.push(signal),
  }, logger("test"));
  await channel.listen(0, LOOPBACK);
  t.after(() => channel.close());
  const peer = channel.engine.addPeer(new Peer<null>(nmsKeys.publicKey, { kind: "direct", endpoint: { address: LOOPBACK, port: nmsPort } }, null, true));

  const reply = async (requestId: number, timeoutMs = 3_000): Promise<Signal | undefined> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const found = received.find((s) => "requestId" in s && s.requestId === requestId);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  };
  return { nms, send: (s: Signal) => channel.signal(peer, s), reply };
}

test("NMS replies to maximum-length FQDN", async (t) => {
  const { nms, send, reply } = await provisionedClient(t);
  send({ type: SignalType.RouteRequest, requestId: 1, target: { fqdn: "x".repeat(MAX_FIELD_BYTES) } });

  const response = await reply(1);
  assert.ok(response, "no reply to the route request");
  assert.equal(response.type, SignalType.Error);
  assert.equal(nms.channel.engine.counters.get("drop.internal_error"), 0);
});

test("NMS long FQDNs raise no internal errors", async (t) => {
  const { nms, send, reply } = await provisionedClient(t);
  for (let i = 0; i < 50; i++) {
    send({ type: SignalType.RouteRequest, requestId: 100 + i, target: { fqdn: `${"y".repeat(MAX_FIELD_BYTES - 20)}.overlay.test` } });
  }
  send({ type: SignalType.RouteRequest, requestId: 1, target: { fqdn: "missing.overlay.test" } });

  const response = await reply(1);
  assert.ok(response, "no reply to the route request");
  assert.equal(response.type, SignalType.Error);
  assert.equal(nms.channel.engine.counters.get("drop.internal_error"), 0);
});
