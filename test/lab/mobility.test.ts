// Mobility and cloud faults, each during a paced, checksummed TCP stream over
// the overlay: cn1 moves from natb to natc, then to an IPv6-only network; the
// cloud is killed with SIGKILL and restarted; the adapter's WAN address
// changes under a general node's stream. Virtual IPs stay, so the TCP
// connections must survive; the longest pause in delivery is reported.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import fs from "node:fs";
import { Lab, LabHost } from "./harness.js";
import { Overlay, OverlayNode, startOverlay, stopOverlay } from "./overlay-fixture.js";

const FIXTURES = path.resolve("test/lab/fixtures");
const STREAM_BYTES = 24 * 1024 * 1024;
const STREAM_SECONDS = 16;

describe("mobility", { timeout: 240_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn1: OverlayNode;
  let cn2: OverlayNode;

  before(async () => {
    ({ lab, overlay, nodes: [cn1, cn2] } = await startOverlay(["cn1", "cn2"]));
    // gn, an unmodified device behind the adapter, keeps its DHCP client running.
    await overlay.admin("node", "add", "ad1", "--kind", "adapter");
    await overlay.addGeneralNode("ad1", "gn1", lab.mac.gn);
    const adapter = await overlay.startNode("adapter", "ad1", lab.iface.adapterLan);
    await adapter.process.waitForLine(/"general node added"/, 20_000);
    const script = path.join(overlay.dir, "udhcpc.sh");
    fs.writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr flush dev "$interface"\nip addr add "$ip/$subnet" dev "$interface"\nip route replace default via "$router"\n', { mode: 0o755 });
    lab.spawn("gn", ["udhcpc", "-f", "-i", "eth0", "-s", script]);
    await new Promise((r) => setTimeout(r, 2_000));
  });

  after(() => stopOverlay(lab, overlay));

  /** Starts a stream from one host to a virtual IP on another; resolves with the receiver's report. */
  async function stream(from: LabHost, to: LabHost, toVirtualIP: string, port: number, during: () => Promise<void>) {
    const receiver = lab.spawn(to, ["node", "--import", "tsx", path.join(FIXTURES, "stream-receiver.ts"), toVirtualIP, String(port)]);
    await receiver.waitForLine(/listening/, 10_000);
    const sender = lab.spawn(from, ["node", "--import", "tsx", path.join(FIXTURES, "stream-sender.ts"), toVirtualIP, String(port), String(STREAM_BYTES), String(STREAM_SECONDS)]);
    await during();
    const sent = JSON.parse(await sender.waitForLine(/sha256/, 90_000)) as { bytes: number; sha256: string };
    const received = JSON.parse(await receiver.waitForLine(/sha256/, 30_000)) as { bytes: number; sha256: string; maxGapMs: number; maxGapAtBytes: number };
    assert.equal(received.bytes, sent.bytes);
    assert.equal(received.sha256, sent.sha256);
    return received;
  }

  test("a TCP stream survives natb to natc to IPv6-only", async () => {
    const receiver = lab.spawn("cn1", ["node", "--import", "tsx", path.join(FIXTURES, "stream-receiver.ts"), cn1.virtualIP, "5001"]);
    await receiver.waitForLine(/listening/, 10_000);
    const sender = lab.spawn("gn", ["node", "--import", "tsx", path.join(FIXTURES, "stream-sender.ts"), cn1.virtualIP, "5001", String(STREAM_BYTES), String(STREAM_SECONDS)]);

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
    const row = status.tunnels.find((t) => t.fqdn === "gn1.cyphonic.internal");
    assert.equal(row?.path, "relay", "IPv6-only cn1 reaches the IPv4 adapter through the relay");
    assert.ok((status.counters["underlay.changes"] ?? 0) >= 2, "both moves were noticed");
  });

  test("a TCP stream survives a cloud kill -9 and restart", async () => {
    await lab.move("natb");
    const received = await stream("cn2", "cn1", cn1.virtualIP, 5002, async () => {
      await new Promise((r) => setTimeout(r, 4_000));
      await overlay.cloud.kill("SIGKILL");
      await overlay.cloud.exited;
      await new Promise((r) => setTimeout(r, 2_000));
      await overlay.startCloud();
    });
    console.log(`cloud restart: ${received.bytes} bytes intact, longest gap in delivery ${received.maxGapMs} ms`);
    assert.ok(received.maxGapMs < 3_000, `the stream stalled for ${received.maxGapMs} ms`);
  });

  test("a general node's stream survives the adapter's WAN address change", async () => {
    const received = await stream("gn", "cn2", cn2.virtualIP, 5003, async () => {
      await new Promise((r) => setTimeout(r, 4_000));
      // A new DHCP lease on the WAN side: another address on the same network.
      // The old one goes first, because deleting a primary address also
      // deletes the secondaries of its subnet.
      await lab.exec("adapter", ["ip", "addr", "del", `${lab.addr.adapterWan}/24`, "dev", lab.iface.adapterWan]);
      await lab.exec("adapter", ["ip", "addr", "add", "192.168.1.3/24", "dev", lab.iface.adapterWan]);
      await lab.exec("adapter", ["ip", "route", "replace", "default", "via", "192.168.1.1"]);
    });
    console.log(`adapter WAN change: ${received.bytes} bytes intact, longest gap in delivery ${received.maxGapMs} ms`);
    const status = await overlay.status("ad1");
    assert.ok((status.counters["underlay.changes"] ?? 0) >= 1, "the adapter noticed its new address");
    assert.ok(received.maxGapMs < 3_000, `the stream stalled for ${received.maxGapMs} ms`);
  });

  test("a TCP stream survives seconds of lost contact with the cloud", async () => {
    // A bridge-family table sees every frame inet's bridge forwards.
    const cloud4 = lab.addr.cloud;
    const cloud6 = lab.addr.cloud6;
    const block = `table bridge cut { chain cutoff { type filter hook forward priority 0; ip saddr ${cloud4} drop; ip daddr ${cloud4} drop; ip6 saddr ${cloud6} drop; ip6 daddr ${cloud6} drop; }; }`;
    const received = await stream("cn2", "cn1", cn1.virtualIP, 5004, async () => {
      await new Promise((r) => setTimeout(r, 3_000));
      const cut = await lab.exec("inet", ["nft", block]);
      assert.equal(cut.code, 0, cut.stderr);
      const probe = await lab.exec("cn2", ["ping", "-c", "1", "-W", "1", cloud4]);
      assert.notEqual(probe.code, 0, "the cloud is cut off");
      await new Promise((r) => setTimeout(r, 6_000));
      await lab.exec("inet", ["nft", "delete", "table", "bridge", "cut"]);
    });
    console.log(`cloud unreachable for 6 s: ${received.bytes} bytes intact, longest gap in delivery ${received.maxGapMs} ms`);
    assert.ok(received.maxGapMs < 3_000, `the stream stalled for ${received.maxGapMs} ms`);
    const deadline = Date.now() + 20_000;
    let registered = false;
    while (!registered && Date.now() < deadline) {
      registered = (await overlay.status("cn1")).nms?.registered === true && (await overlay.status("cn2")).nms?.registered === true;
      if (!registered) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(registered, "both nodes are registered again");
  });
});
