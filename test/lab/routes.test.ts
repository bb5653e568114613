// Route selection end to end: for each placement of two nodes, the path
// `cyphonic status` reports, traffic over it, and the relay's byte counter,
// which must stay at zero on direct paths. Hosts: cloud and cn2 are public,
// cn1 sits behind natb, "ap" runs on the adapter host behind nata, and cn3
// has IPv6 only, and cn4 shares natb's LAN with cn1.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Lab, NaptKind } from "./harness.js";
import { Overlay, OverlayNode } from "./overlay-fixture.js";

const FIXTURES = path.resolve("test/lab/fixtures");

interface Case {
  name: string;
  from: OverlayNode;
  to: OverlayNode;
  path: "direct" | "relay";
  reason: RegExp;
}

async function relayBytes(overlay: Overlay): Promise<number> {
  return (await overlay.cloudStatus()).services.trs?.["relay.bytes"] ?? 0;
}

/** Pings until the first reply; returns the time it took, in ms, or throws. */
async function timeToFirstReply(lab: Lab, from: OverlayNode, to: OverlayNode): Promise<number> {
  const started = Date.now();
  const r = await lab.exec(from.host, ["ping", "-c", "1", "-w", "15", to.virtualIP], { timeoutMs: 20_000 });
  // With -w, ping keeps sending until the first reply, so more than one may come back.
  assert.match(r.stdout, / [1-9]\d* received/, `no reply from ${to.name}: ${r.stdout}`);
  return Date.now() - started;
}

async function checkCase(lab: Lab, overlay: Overlay, c: Case): Promise<void> {
  const relayBefore = await relayBytes(overlay);
  const firstMs = await timeToFirstReply(lab, c.from, c.to);
  const ping = await lab.exec(c.from.host, ["ping", "-c", "20", "-i", "0.05", "-q", c.to.virtualIP], { timeoutMs: 20_000 });
  assert.match(ping.stdout, / 0% packet loss/, ping.stdout);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.stdout)?.[1];

  const server = lab.spawn(c.to.host, ["iperf3", "-s", "-1", "--forceflush", "-B", c.to.virtualIP]);
  await server.waitForLine(/Server listening/, 5_000);
  const r = await lab.exec(c.from.host, ["iperf3", "-c", c.to.virtualIP, "-t", "2", "-J"], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  const mbits = (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;

  const status = await overlay.status(c.from.name);
  const row = status.tunnels.find((t) => t.fqdn === c.to.fqdn);
  assert.ok(row, `${c.from.name} has no tunnel row for ${c.to.name}`);
  assert.equal(row.path, c.path, `path from ${c.from.name} to ${c.to.name}: ${row.reason}`);
  assert.match(row.reason, c.reason);
  const relayed = (await relayBytes(overlay)) - relayBefore;
  if (c.path === "direct") assert.equal(relayed, 0, "the relay carried bytes of a direct path");
  else assert.ok(relayed > 1_000_000, `the relay carried only ${relayed} bytes`);
  console.log(`${c.name}: ${c.path}, first reply after ${firstMs} ms, RTT avg ${rtt} ms, iperf3 ${mbits.toFixed(0)} Mbit/s, relay ${relayed} bytes`);
}

function suite(naptKind: NaptKind, cases: (n: Record<string, OverlayNode>) => Case[]): void {
  describe(`route cases, natb ${naptKind}`, { timeout: 300_000 }, () => {
    let lab: Lab;
    let overlay: Overlay;
    const nodes: Record<string, OverlayNode> = {};

    before(async () => {
      lab = await Lab.up({ naptKind });
      overlay = new Overlay(lab);
      await overlay.startCloud();
      nodes.cn1 = await overlay.addNode("cn1", "cn1");
      nodes.cn2 = await overlay.addNode("cn2", "cn2");
      nodes.cp = await overlay.addNode("cloud", "cp");
      nodes.ap = await overlay.addNode("adapter", "ap");
      if (naptKind === "masquerade") nodes.cn3 = await overlay.addNode("cn3", "cn3");
      if (naptKind === "masquerade") nodes.cn4 = await overlay.addNode("cn4", "cn4");
    });

    after(async () => {
      overlay?.cleanup();
      await lab?.down();
    });

    test("each placement gets its path", async () => {
      for (const c of cases(nodes)) await checkCase(lab, overlay, c);
    });

    if (naptKind === "fully-random") {
      test("a relayed stream survives a relay restart", async () => {
        const from = nodes.ap!;
        const to = nodes.cn1!;
        const receiver = lab.spawn(to.host, ["node", "--import", "tsx", path.join(FIXTURES, "stream-receiver.ts"), to.virtualIP, "5005"]);
        await receiver.waitForLine(/listening/, 10_000);
        const sender = lab.spawn(from.host, ["node", "--import", "tsx", path.join(FIXTURES, "stream-sender.ts"), to.virtualIP, "5005", String(16 * 1024 * 1024), "14"]);
        await new Promise((r) => setTimeout(r, 4_000));
        // The TRS runs in the cloud process here: kill -9 it and start it again.
        await overlay.cloud.kill("SIGKILL");
        await overlay.cloud.exited;
        await overlay.startCloud();
        const sent = JSON.parse(await sender.waitForLine(/sha256/, 90_000)) as { bytes: number; sha256: string };
        const received = JSON.parse(await receiver.waitForLine(/sha256/, 30_000)) as { bytes: number; sha256: string; maxGapMs: number };
        assert.equal(received.sha256, sent.sha256);
        console.log(`relay restart: ${received.bytes} bytes intact, longest gap in delivery ${received.maxGapMs} ms`);
        assert.ok(received.maxGapMs < 10_000, `the stream stalled for ${received.maxGapMs} ms`);
      });
    }
  });
}

suite("masquerade", (n) => [
  { name: "both public", from: n.cp!, to: n.cn2!, path: "direct", reason: /both ends public/ },
  { name: "one side behind NAPT", from: n.cn2!, to: n.cn1!, path: "direct", reason: /peer behind NAPT/ },
  { name: "both behind NAPT, endpoint-independent", from: n.ap!, to: n.cn1!, path: "direct", reason: /hole punching/ },
  { name: "IPv6-only to IPv4", from: n.cn3!, to: n.cn2!, path: "relay", reason: /no common address family/ },
  { name: "same site behind one NAPT", from: n.cn4!, to: n.cn1!, path: "direct", reason: /same site/ },
]);

suite("fully-random", (n) => [
  { name: "both behind NAPT, one endpoint-dependent", from: n.ap!, to: n.cn1!, path: "relay", reason: /hole punching/ },
]);

describe("relayed route moves to a direct path", { timeout: 300_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;

  after(async () => {
    overlay?.cleanup();
    await lab?.down();
  });

  test("probing finds the direct path once the NAPT allows it", async () => {
    lab = await Lab.up({ naptKind: "fully-random" });
    overlay = new Overlay(lab);
    await overlay.startCloud();
    const cn1 = await overlay.addNode("cn1", "cn1");
    const ap = await overlay.addNode("adapter", "ap");
    await timeToFirstReply(lab, ap, cn1);
    const before = (await overlay.status("ap")).tunnels.find((t) => t.fqdn === cn1.fqdn);
    assert.equal(before?.path, "relay", "an endpoint-dependent NAPT ends on the relay");

    // The router is replaced by one that maps endpoint-independently; a ping
    // stream runs across the switch from relay to direct.
    await lab.setNapt("natb", "masquerade");
    // Replacing the router dropped its mappings: relayed traffic resumes once
    // cn1's next keep-alive to the relay opens a new one (within 15 s).
    const recovered = Date.now() + 30_000;
    while (Date.now() < recovered) {
      const r = await lab.exec(ap.host, ["ping", "-c", "3", "-i", "0.2", "-W", "1", cn1.virtualIP], { timeoutMs: 10_000 });
      if (/ 3 received/.test(r.stdout)) break;
    }
    const pings = lab.exec(ap.host, ["ping", "-c", "400", "-i", "0.1", "-q", cn1.virtualIP], { timeoutMs: 60_000 });
    const deadline = Date.now() + 45_000;
    let path = "relay";
    while (Date.now() < deadline && path !== "direct") {
      await new Promise((r) => setTimeout(r, 1_000));
      path = (await overlay.status("ap")).tunnels.find((t) => t.fqdn === cn1.fqdn)?.path ?? "none";
    }
    assert.equal(path, "direct", "the relayed route moved to the direct path");
    const result = await pings;
    const lost = Number(/(\d+)% packet loss/.exec(result.stdout)?.[1] ?? "100");
    assert.ok(lost <= 1, `the switch lost ${lost}% of the pings`);
    console.log(`relay to direct: moved, ${lost}% of 400 pings lost across the switch`);
  });
});
