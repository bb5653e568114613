// The overlay core end to end, with real processes in network namespaces:
// cn1 behind an nftables NAPT, cn2 on the public segment, the cloud beside it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Lab } from "./harness.js";
import { Overlay, OverlayNode, startOverlay, stopOverlay } from "./overlay-fixture.js";
import { packetsContaining } from "./packet.js";

const INJECT = path.resolve("test/lab/fixtures/udp-inject.ts");
const TUNNEL_PORT = 7000;

describe("overlay core", { timeout: 240_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn1: OverlayNode;
  let cn2: OverlayNode;

  before(async () => {
    ({ lab, overlay, nodes: [cn1, cn2] } = await startOverlay(["cn1", "cn2"]));
    overlay.useNodeResolver("cn1");
    overlay.useNodeResolver("cn2");
  });

  after(() => stopOverlay(lab, overlay));

  test("registration sees the NAPT in front of cn1 only", async () => {
    const s1 = await overlay.status("cn1");
    const s2 = await overlay.status("cn2");
    assert.equal(s1.nms?.napt, true);
    assert.equal(s1.nms?.observed, `${lab.addr.natbWan}:${TUNNEL_PORT}`);
    assert.equal(s2.nms?.napt, false);
    assert.equal(s2.nms?.observed, `${lab.addr.cn2}:${TUNNEL_PORT}`);
  });

  test("dig from cn1 returns cn2's virtual IP", async () => {
    const r = await lab.exec("cn1", ["dig", "+short", "+time=10", `@${cn1.virtualIP}`, cn2.fqdn, "A"], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), cn2.virtualIP);
    const status = await overlay.status("cn1");
    const row = status.tunnels.find((t) => t.fqdn === cn2.fqdn);
    assert.ok(row, "cn1 has a tunnel row for cn2");
    assert.equal(row.path, "direct");
    assert.equal(row.session, true);
    assert.equal(row.endpoint, `${lab.addr.cn2}:${TUNNEL_PORT}`);
  });

  test("ping by name works both ways", async () => {
    const there = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn2.fqdn], { timeoutMs: 20_000 });
    assert.equal(there.code, 0, there.stdout + there.stderr);
    assert.match(there.stdout, /3 received/);
    const back = await lab.exec("cn2", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn1.fqdn.toUpperCase()], { timeoutMs: 20_000 });
    assert.equal(back.code, 0, back.stdout + back.stderr);
    assert.match(back.stdout, /3 received/);
  });

  test("iperf3 TCP run completes over the tunnel", async () => {
    const server = lab.spawn("cn2", ["iperf3", "-s", "-1", "--forceflush", "-B", cn2.virtualIP]);
    await server.waitForLine(/Server listening/, 5_000);
    const r = await lab.exec("cn1", ["iperf3", "-c", cn2.virtualIP, "-t", "3", "-J"], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
    assert.ok(report.end.sum_received.bytes > 1_000_000, `received ${report.end.sum_received.bytes} bytes`);
    console.log(`iperf3 cn1 -> cn2: ${(report.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s`);
  });

  test("capture on the internet segment shows only UDP tunnel packets and no marker", async () => {
    const marker = `CYPHONIC-MARKER-${Date.now()}`;
    // ARP and IPv6 neighbor discovery from link-local addresses are link upkeep, not traffic of the nodes.
    const capture = await lab.capture("cn2", lab.iface.cn2, "not arp and not (icmp6 and ip6 src net fe80::/10)");
    const listener = lab.spawn("cn2", ["nc", "-l", "-p", "5555", "-s", cn2.virtualIP]);
    await new Promise((r) => setTimeout(r, 300));
    const send = await lab.exec("cn1", ["sh", "-c", `echo ${marker} | nc -q 1 ${cn2.virtualIP} 5555`], { timeoutMs: 10_000 });
    assert.equal(send.code, 0, send.stderr);
    await listener.exited;
    assert.match(listener.output(), new RegExp(marker), "the marker crossed the tunnel");
    const packets = await capture.stop();
    assert.ok(packets.length > 0, "the capture saw the tunnel traffic");
    const notUdp = packets.filter((p) => p.ip && p.transport?.kind !== "udp");
    assert.deepEqual(notUdp.map((p) => `${p.ip?.src}->${p.ip?.dst} ${p.transport?.kind}`), []);
    assert.equal(packetsContaining(packets, Buffer.from(marker)).length, 0, "marker visible on the wire");
  });

  test("malformed, replayed and forged datagrams are dropped and counted", async () => {
    // Capture real tunnel packets towards cn2 to replay them.
    const capture = await lab.capture("cn2", lab.iface.cn2, `udp and dst port ${TUNNEL_PORT}`);
    const ping = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.2", cn2.virtualIP], { timeoutMs: 10_000 });
    assert.equal(ping.code, 0);
    // Transport messages of cn1's tunnel: their session stays current, so a replay meets the replay window.
    const captured = (await capture.stop()).filter((p) => p.ip?.src === lab.addr.natbWan && p.payload.length > 32 && p.payload[0] === 4);
    assert.ok(captured.length >= 3, `captured ${captured.length} transport packets`);

    const before = (await overlay.status("cn2")).counters;
    const replayed = captured.map((p) => p.payload.toString("hex"));
    const wrongKey = Buffer.from(captured[0]!.payload);
    wrongKey.fill(0x5a, 16); // same header and counter, ciphertext from another key
    wrongKey.writeBigUInt64BE(1n << 40n, 8);
    const unknownIndex = Buffer.from(captured[0]!.payload);
    unknownIndex.writeUInt32BE(0xdeadbeef, 4);
    const truncated = [Buffer.from([4, 0, 0]), Buffer.from([1, 0, 0, 0, 1, 2, 3]), Buffer.from([2, 0, 0, 0])];
    const forgedInitiation = Buffer.alloc(128, 0x11);
    forgedInitiation.writeUInt32BE(0x01000000, 0);
    const hostile = [...replayed, wrongKey.toString("hex"), unknownIndex.toString("hex"), ...truncated.map((b) => b.toString("hex")), forgedInitiation.toString("hex")];

    const target = `${lab.addr.cn2}:${TUNNEL_PORT}`;
    const r1 = await lab.exec("cloud", ["node", "--import", "tsx", INJECT, target, ...hostile], { timeoutMs: 15_000 });
    assert.equal(r1.code, 0, r1.stderr);
    const r2 = await lab.exec("cloud", ["node", "--import", "tsx", INJECT, target, "random", "2000"], { timeoutMs: 30_000 });
    assert.equal(r2.code, 0, r2.stderr);
    await new Promise((r) => setTimeout(r, 500));

    const afterCounters = (await overlay.status("cn2")).counters;
    const delta = (k: string) => (afterCounters[k] ?? 0) - (before[k] ?? 0);
    assert.ok(delta("drop.replay") >= replayed.length, `replay drops ${delta("drop.replay")} of ${replayed.length}: ${JSON.stringify(Object.fromEntries(Object.keys(afterCounters).map((k) => [k, delta(k)]).filter(([, v]) => v)))}`);
    assert.ok(delta("drop.decrypt_failed") >= 1, `decrypt_failed drops ${delta("drop.decrypt_failed")}`);
    assert.ok(delta("drop.unknown_session") >= 1, `unknown_session drops ${delta("drop.unknown_session")}`);
    assert.ok(delta("drop.short") >= 3, `short drops ${delta("drop.short")}`);
    assert.ok(delta("drop.bad_mac") >= 1, `bad_mac drops ${delta("drop.bad_mac")}`);
    const drops = Object.entries(afterCounters).filter(([k]) => k.startsWith("drop.")).reduce((n, [k, v]) => n + v - (before[k] ?? 0), 0);
    assert.ok(drops >= 2000 + hostile.length - 50, `counted ${drops} drops for ${2000 + hostile.length} hostile datagrams`);

    // The same at the cloud's NMS port, then check both still serve.
    const cloudBefore = (await overlay.cloudStatus()).services.nms!;
    const r3 = await lab.exec("cn2", ["node", "--import", "tsx", INJECT, `${lab.addr.cloud}:7401`, "random", "1000", ], { timeoutMs: 30_000 });
    assert.equal(r3.code, 0, r3.stderr);
    const r4 = await lab.exec("cn2", ["node", "--import", "tsx", INJECT, `${lab.addr.cloud}:7401`, ...replayed], { timeoutMs: 15_000 });
    assert.equal(r4.code, 0, r4.stderr);
    await new Promise((r) => setTimeout(r, 500));
    const cloudAfter = (await overlay.cloudStatus()).services.nms!;
    const cloudDrops = Object.entries(cloudAfter).filter(([k]) => k.startsWith("drop.")).reduce((n, [k, v]) => n + v - (cloudBefore[k] ?? 0), 0);
    assert.ok(cloudDrops >= 1000, `cloud counted ${cloudDrops} drops`);

    const still = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn2.fqdn], { timeoutMs: 15_000 });
    assert.match(still.stdout, /3 received/, "the node keeps serving");
    const s1 = await overlay.status("cn1");
    assert.equal(s1.nms?.registered, true, "cn1 is still registered with the NMS");
  });

  test("restarting the cloud: nodes re-register and traffic resumes", async () => {
    const regBefore = (await overlay.status("cn1")).nms!.registrations;
    await overlay.cloud.kill("SIGKILL");
    await overlay.cloud.exited;
    // Established tunnels do not depend on the cloud.
    const during = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn2.virtualIP], { timeoutMs: 15_000 });
    assert.match(during.stdout, /3 received/, "tunnel works while the cloud is down");
    await overlay.startCloud();
    const deadline = Date.now() + 30_000;
    let s1 = await overlay.status("cn1");
    let s2 = await overlay.status("cn2");
    while (Date.now() < deadline && !(s1.nms!.registrations > regBefore && s1.nms!.registered && s2.nms!.registered)) {
      await new Promise((r) => setTimeout(r, 500));
      s1 = await overlay.status("cn1");
      s2 = await overlay.status("cn2");
    }
    assert.ok(s1.nms!.registrations > regBefore, "cn1 registered again");
    assert.equal(s1.nms!.registered, true);
    assert.equal(s2.nms!.registered, true);
    // Route selection works against the restarted NMS: a fresh lookup from cn2.
    const r = await lab.exec("cn2", ["dig", "+short", "+time=10", `@${cn2.virtualIP}`, cn1.fqdn], { timeoutMs: 20_000 });
    assert.equal(r.stdout.trim(), cn1.virtualIP);
    const ping = await lab.exec("cn2", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn1.fqdn], { timeoutMs: 15_000 });
    assert.match(ping.stdout, /3 received/);
  });
});
