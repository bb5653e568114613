// Measures RTT (100 pings at 10 ms) and iperf3 TCP (3 runs of 5 s) in the
// namespace lab for: a node to a node (cn1 -> cn2, direct), a general node
// through the adapter (gn -> cn2, direct; gn -> cn1, relayed because both
// ends sit behind NAPT), and the underlay without a tunnel. Needs root and a
// built dist/cyphonic.cjs:  node --import tsx scripts/measure-paths.ts
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Lab, LabHost } from "../test/lab/harness.js";
import { Overlay } from "../test/lab/overlay-fixture.js";

const UDHCPC_SCRIPT = `#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr flush dev "$interface"
ip addr add "$ip/$subnet" dev "$interface"
ip route replace default via "$router"
`;

async function measure(lab: Lab, from: LabHost, server: LabHost, to: string, label: string): Promise<void> {
  // The first pings build the tunnel; they are not measured.
  await lab.exec(from, ["ping", "-c", "3", "-W", "2", to], { timeoutMs: 15_000 });
  const ping = await lab.exec(from, ["ping", "-c", "100", "-i", "0.01", "-q", to], { timeoutMs: 30_000 });
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(ping.stdout);

  const rates: number[] = [];
  for (let i = 0; i < 3; i++) {
    const iperfServer = lab.spawn(server, ["iperf3", "-s", "-1", "--forceflush", "-B", to]);
    await iperfServer.waitForLine(/Server listening/, 5_000);
    const r = await lab.exec(from, ["iperf3", "-c", to, "-t", "5", "-J"], { timeoutMs: 30_000 });
    const report = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    rates.push(report.end.sum_received.bits_per_second / 1e6);
    await iperfServer.exited;
  }
  const mbits = rates.map((r) => r.toFixed(0)).join(", ");
  console.log(`${label}: RTT min/avg/max ${rtt?.[1]}/${rtt?.[2]}/${rtt?.[3]} ms; iperf3 TCP ${mbits} Mbit/s`);
}

async function main(): Promise<void> {
  const lab = await Lab.up();
  try {
    const overlay = new Overlay(lab);
    await overlay.startCloud();
    const cn1 = await overlay.addNode("cn1", "cn1");
    const cn2 = await overlay.addNode("cn2", "cn2");
    await overlay.admin("node", "add", "ad1", "--kind", "adapter");
    await overlay.addGeneralNode("ad1", "gn1", lab.mac.gn);
    const adapter = await overlay.startNode("adapter", "ad1", lab.iface.adapterLan);
    await adapter.process.waitForLine(/"general node added"/, 20_000);

    const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "measure-")), "udhcpc.sh");
    fs.writeFileSync(script, UDHCPC_SCRIPT, { mode: 0o755 });
    // The client keeps running, as on a real device: the adapter revokes a lease that is not renewed.
    lab.spawn("gn", ["udhcpc", "-f", "-i", "eth0", "-t", "10", "-T", "1", "-s", script]);
    await new Promise((r) => setTimeout(r, 3_000));

    await measure(lab, "cn1", "cn2", cn2.virtualIP, "cn1 -> cn2, node to node, direct");
    await measure(lab, "gn", "cn2", cn2.virtualIP, "gn -> cn2, through the adapter, direct");
    await measure(lab, "gn", "cn1", cn1.virtualIP, "gn -> cn1, through the adapter, relay (both behind NAPT)");
    await measure(lab, "cn1", "cn2", lab.addr.cn2, "cn1 -> cn2, underlay without a tunnel");
    overlay.cleanup();
  } finally {
    await lab.down();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
