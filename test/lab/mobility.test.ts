// Mobility: cn1 moves from natb to natc, then to an IPv6-only network, while
// cn2 sends it a paced, checksummed TCP stream over the overlay. Virtual IPs
// stay, so the TCP connection must survive; the longest pause in delivery is
// reported.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Lab } from "./harness.js";
import { Overlay, OverlayNode } from "./overlay-fixture.js";

const FIXTURES = path.resolve("test/lab/fixtures");
const STREAM_BYTES = 24 * 1024 * 1024;
const STREAM_SECONDS = 16;

describe("mobility", { timeout: 240_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn1: OverlayNode;
  let cn2: OverlayNode;

  before(async () => {
    lab = await Lab.up();
    overlay = new Overlay(lab);
    await overlay.startCloud();
    cn1 = await overlay.addNode("cn1", "cn1");
    cn2 = await overlay.addNode("cn2", "cn2");
  });

  after(async () => {
    overlay?.cleanup();
    await lab?.down();
  });

  test("a TCP stream survives natb to natc to IPv6-only", async () => {
    const receiver = lab.spawn("cn1", ["node", "--import", "tsx", path.join(FIXTURES, "stream-receiver.ts"), cn1.virtualIP, "5001"]);
    await receiver.waitForLine(/listening/, 10_000);
    const sender = lab.spawn("cn2", ["node", "--import", "tsx", path.join(FIXTURES, "stream-sender.ts"), cn1.virtualIP, "5001", String(STREAM_BYTES), String(STREAM_SECONDS)]);

    await new Promise((r) => setTimeout(r, 4_000));
    await lab.move("natc");
    await new Promise((r) => setTimeout(r, 5_000));
    await lab.move("v6");

    const sentLine = await sender.waitForLine(/sha256/, 90_000);
    const receivedLine = await receiver.waitForLine(/sha256/, 30_000);
    const sent = JSON.parse(sentLine) as { bytes: number; sha256: string };
    const received = JSON.parse(receivedLine) as { bytes: number; sha256: string; maxGapMs: number; maxGapAtBytes: number };
    assert.equal(received.bytes, sent.bytes);
    assert.equal(received.sha256, sent.sha256);
    console.log(`mobility: ${received.bytes} bytes intact, longest gap in delivery ${received.maxGapMs} ms at byte ${received.maxGapAtBytes}`);

    const status = await overlay.status("cn1");
    assert.equal(status.node?.virtualIP, cn1.virtualIP, "the virtual IP stays");
    assert.equal(status.nms?.observed?.startsWith("[2001:db8:1::40]"), true, `NMS sees ${status.nms?.observed}`);
    const row = status.tunnels.find((t) => t.fqdn === cn2.fqdn);
    assert.equal(row?.path, "relay", "IPv6-only cn1 reaches IPv4 cn2 through the relay");
    assert.ok((status.counters["underlay.changes"] ?? 0) >= 2, "both moves were noticed");
  });
});
