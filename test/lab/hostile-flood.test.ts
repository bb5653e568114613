// Handshake initiations flooded at a node's tunnel port. mac1 needs only the
// node's public key, which every peer learns from the NMS. The flood replays
// one initiation from a key the node does not know, so the sender does no
// crypto at all, while the node runs two X25519 operations per datagram
// before it rejects the key. This test fails while such a flood from one host
// stops the tunnel traffic of the node.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Lab } from "./harness.js";
import { Overlay, OverlayNode } from "./overlay-fixture.js";

const TUNNEL_PORT = 7000;
const FLOOD_SECONDS = 8;
const PINGS = 15;

/** Sends one precomputed initiation to HOST:PORT as fast as the socket takes it. */
const FLOOD_SCRIPT = `
import dgram from "node:dgram";
import { generateKeyPair } from "${path.resolve("firmware/src/protocol/crypto.ts")}";
import { createInitiation } from "${path.resolve("firmware/src/protocol/handshake.ts")}";
import { keyPairFromPrivate } from "${path.resolve("firmware/src/protocol/noise.ts")}";
const [keyFile, host, port, seconds] = process.argv.slice(2);
const target = keyPairFromPrivate(Buffer.from(fs.readFileSync(keyFile, "utf8").trim(), "base64")).publicKey;
const datagram = createInitiation(generateKeyPair(), target, 1, BigInt(Date.now()), Buffer.alloc(0)).datagram;
const socket = dgram.createSocket("udp4");
const end = Date.now() + Number(seconds) * 1000;
const burst = () => {
  if (Date.now() > end) return socket.close();
  for (let i = 0; i < 50; i++) socket.send(datagram, Number(port), host);
  setImmediate(burst);
};
burst();
`;

describe("initiation flood at a node", { timeout: 180_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn2: OverlayNode;
  let floodFile: string;

  before(async () => {
    lab = await Lab.up();
    overlay = new Overlay(lab);
    await overlay.startCloud();
    await overlay.addNode("cn1", "cn1");
    cn2 = await overlay.addNode("cn2", "cn2");
    floodFile = path.join(overlay.dir, "flood.ts");
    fs.writeFileSync(floodFile, `import fs from "node:fs";\n${FLOOD_SCRIPT}`);
  });

  after(async () => {
    overlay?.cleanup();
    await lab?.down();
  });

  test("tunnel keeps working under the flood", async () => {
    const warmup = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.3", "-W", "2", cn2.virtualIP], { timeoutMs: 15_000 });
    assert.match(warmup.stdout, /[1-9] received/, "the tunnel works before the flood");

    // The operator reads the node's public key from its private key file.
    const flood = lab.spawn("cloud", ["node", "--import", "tsx", floodFile, path.join(cn2.stateDir, "private.key"), lab.addr.cn2, String(TUNNEL_PORT), String(FLOOD_SECONDS)]);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const during = await lab.exec("cn1", ["ping", "-c", String(PINGS), "-i", "0.4", "-W", "1", cn2.virtualIP], { timeoutMs: 30_000 });
    await flood.exited;

    const received = Number(/(\d+) received/.exec(during.stdout)?.[1] ?? 0);
    const counters = (await overlay.status("cn2")).counters;
    assert.ok(received >= PINGS / 2, `${received} of ${PINGS} pings answered during the flood; cn2 drop.unknown_peer ${counters["drop.unknown_peer"]}`);
  });
});
