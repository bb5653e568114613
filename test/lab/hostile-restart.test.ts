// A node killed with SIGKILL and restarted keeps its identity but forgets its
// tunnels, while its peer keeps sending on the old session. The peer must
// notice the dead session, and the restarted node must accept the peer's new
// handshake (it asks the NMS about the unknown key), without the restarted
// node sending first.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Lab } from "./harness.js";
import { Overlay, OverlayNode, startOverlay, stopOverlay } from "./overlay-fixture.js";

/** How long the peer may take to reach the restarted node again. */
const RECOVERY_MS = 60_000;

describe("node restart", { timeout: 240_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn1: OverlayNode;
  let cn2: OverlayNode;

  before(async () => {
    ({ lab, overlay, nodes: [cn1, cn2] } = await startOverlay(["cn1", "cn2"]));
  });

  after(() => stopOverlay(lab, overlay));

  test("peer reaches a restarted node", async () => {
    const first = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.3", "-W", "2", cn2.virtualIP], { timeoutMs: 15_000 });
    assert.match(first.stdout, /[1-9] received/, "cn1 reaches cn2 before the restart");
    const back = await lab.exec("cn2", ["ping", "-c", "2", "-i", "0.3", "-W", "2", cn1.virtualIP], { timeoutMs: 15_000 });
    assert.match(back.stdout, /2 received/, "cn2 reaches cn1 before the restart");

    await cn1.process.kill("SIGKILL");
    await cn1.process.exited;
    cn1.process = overlay.spawnNode(cn1);
    await cn1.process.waitForLine(/"registered with NMS"/, 15_000);
    const restarted = await overlay.status("cn1");
    assert.equal(restarted.node?.virtualIP, cn1.virtualIP, "cn1 keeps its virtual IP");

    // Only cn2 sends: cn1 has no reason to contact cn2 by itself.
    const deadline = Date.now() + RECOVERY_MS;
    let reached = false;
    while (!reached && Date.now() < deadline) {
      const r = await lab.exec("cn2", ["ping", "-c", "1", "-W", "1", cn1.virtualIP], { timeoutMs: 5_000 });
      reached = /1 received/.test(r.stdout);
      if (!reached) await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    const counters = (await overlay.status("cn1")).counters;
    const drops = Object.entries(counters).filter(([name]) => name.startsWith("drop."));
    assert.ok(reached, `cn2 did not reach the restarted cn1 within ${RECOVERY_MS} ms; cn1 drops: ${JSON.stringify(drops)}`);
  });
});
