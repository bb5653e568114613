// Checks that the lab topology behaves as scripts/lab.sh documents: routing,
// NAPT source rewriting, port mapping per NAPT kind and complete teardown.
// Needs root.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { Lab, LAB_HOSTS, type LabHost, type NaptKind } from "./harness.js";
import { packetsContaining } from "./packet.js";

const PROBE_SCRIPT = path.join(__dirname, "udp-probe.ts");
const PROBE_ARGV = [process.execPath, "--import", "tsx", PROBE_SCRIPT];
const PROBE_PORT = 40000;
const STARTUP_TIMEOUT_MS = 10_000;
const DATAGRAM_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT_MS = 60_000;

interface Datagram {
  address: string;
  port: number;
  payload: string;
}

function labNamespaces(prefix: string): string[] {
  const listing = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  return listing
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(`${prefix}-`));
}

/** Starts udp-probe listeners on `hosts`, sends one datagram from one cn1 socket to each, and returns what each listener saw. */
async function sendFromOneSocket(lab: Lab, hosts: Array<"cloud" | "cn2">, payload: string): Promise<{ localPort: number; seen: Datagram[] }> {
  const listeners = hosts.map((host) => lab.spawn(host, [...PROBE_ARGV, "listen", String(PROBE_PORT), "1"]));
  try {
    await Promise.all(listeners.map((listener) => listener.waitForLine(/"listening"/, STARTUP_TIMEOUT_MS)));
    const destinations = hosts.map((host) => `${lab.addr[host]}:${PROBE_PORT}`);
    const sent = await lab.exec("cn1", [...PROBE_ARGV, "send", "0", payload, ...destinations], { timeoutMs: STARTUP_TIMEOUT_MS });
    assert.equal(sent.code, 0, `udp-probe send failed: ${sent.stderr}`);
    const { localPort } = JSON.parse(sent.stdout.trim()) as { localPort: number };
    const lines = await Promise.all(listeners.map((listener) => listener.waitForLine(/"datagram"/, DATAGRAM_TIMEOUT_MS)));
    return { localPort, seen: lines.map((line) => JSON.parse(line) as Datagram) };
  } finally {
    await Promise.all(listeners.map((listener) => listener.kill()));
  }
}

describe("lab with masquerade NAPT", { timeout: TEST_TIMEOUT_MS }, () => {
  let lab: Lab;

  before(async () => {
    lab = await Lab.up();
  });

  after(async () => {
    await lab?.down();
  });

  test("namespaces carry the prefix", () => {
    assert.match(lab.prefix, /^cy[0-9a-f]{4}$/);
    for (const host of LAB_HOSTS) {
      assert.equal(lab.ns[host], `${lab.prefix}-${host}`);
    }
    assert.deepEqual(labNamespaces(lab.prefix).sort(), LAB_HOSTS.map((host) => `${lab.prefix}-${host}`).sort());
  });

  test("only routers forward packets", async () => {
    const expected: Record<LabHost, string> = { inet: "1", natb: "1", nata: "1", cloud: "0", cn1: "0", cn2: "0", adapter: "0", gn: "0", gn2: "0", cn3: "0", natc: "1", cn4: "0" };
    for (const host of LAB_HOSTS) {
      const result = await lab.exec(host, ["sysctl", "-n", "net.ipv4.ip_forward"]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), expected[host], `ip_forward in ${host}`);
    }
  });

  test("loopback is up everywhere", async () => {
    for (const host of LAB_HOSTS) {
      const result = await lab.exec(host, ["ping", "-c", "1", "-W", "1", "127.0.0.1"]);
      assert.equal(result.code, 0, `ping 127.0.0.1 in ${host}: ${result.stdout}`);
    }
  });

  test("cn1 pings cn2 through NAPT", async () => {
    const result = await lab.exec("cn1", ["ping", "-c", "2", "-W", "2", lab.addr.cn2]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /2 received/);
  });

  test("cn2 cannot reach cn1 private address", async () => {
    const plain = await lab.exec("cn2", ["ping", "-c", "1", "-W", "1", lab.addr.cn1]);
    assert.notEqual(plain.code, 0, `ping succeeded: ${plain.stdout}`);

    // Even with a route through natb, its forward chain drops what the internet side opens.
    const route = ["ip", "route", "add", lab.net.lanB, "via", lab.addr.natbWan];
    assert.equal((await lab.exec("cn2", route)).code, 0);
    try {
      const routed = await lab.exec("cn2", ["ping", "-c", "1", "-W", "1", lab.addr.cn1]);
      assert.notEqual(routed.code, 0, `ping via natb succeeded: ${routed.stdout}`);
    } finally {
      await lab.exec("cn2", ["ip", "route", "del", lab.net.lanB]);
    }
  });

  test("UDP from cn1 arrives from natb WAN", async () => {
    const { seen } = await sendFromOneSocket(lab, ["cn2"], "hello-cn2");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.address, lab.addr.natbWan);
    assert.equal(seen[0]!.payload, "hello-cn2");
  });

  test("masquerade keeps one port per socket", async () => {
    const { localPort, seen } = await sendFromOneSocket(lab, ["cn2", "cloud"], "eim");
    assert.equal(seen.length, 2);
    assert.equal(seen[0]!.address, lab.addr.natbWan);
    assert.equal(seen[1]!.address, lab.addr.natbWan);
    // Endpoint-independent mapping: both destinations see the same public port.
    assert.equal(seen[0]!.port, seen[1]!.port);
    // Masquerade keeps a free source port unchanged.
    assert.equal(seen[0]!.port, localPort);
  });

  test("capture shows source before and after NAPT", async () => {
    const filter = `udp port ${PROBE_PORT}`;
    const wanCapture = await lab.capture("cn2", lab.iface.cn2, filter);
    const lanCapture = await lab.capture("natb", lab.iface.natbLan, filter);
    const marker = `marker-${lab.prefix}`;
    const { localPort } = await sendFromOneSocket(lab, ["cn2"], marker);
    const wanPackets = packetsContaining(await wanCapture.stop(), marker);
    const lanPackets = packetsContaining(await lanCapture.stop(), marker);

    assert.equal(wanPackets.length, 1);
    assert.equal(wanPackets[0]!.ip?.src, lab.addr.natbWan);
    assert.equal(wanPackets[0]!.ip?.dst, lab.addr.cn2);
    assert.equal(wanPackets[0]!.transport?.kind, "udp");
    assert.equal(wanPackets[0]!.transport?.dstPort, PROBE_PORT);

    assert.equal(lanPackets.length, 1);
    assert.equal(lanPackets[0]!.ip?.src, lab.addr.cn1);
    assert.equal(lanPackets[0]!.transport?.srcPort, localPort);
  });

  test("timed capture sees ICMP through NAPT", async () => {
    const capturing = lab.capture("cn2", lab.iface.cn2, "icmp", 1000);
    // The pings last about 2 s, so some fall inside the capture when tcpdump starts within 1.8 s.
    const ping = await lab.exec("cn1", ["ping", "-c", "10", "-i", "0.2", "-W", "1", lab.addr.cn2]);
    const packets = await capturing;
    assert.equal(ping.code, 0, ping.stdout);
    const requests = packets.filter((packet) => packet.ip?.src === lab.addr.natbWan && packet.ip.dst === lab.addr.cn2);
    const replies = packets.filter((packet) => packet.ip?.src === lab.addr.cn2 && packet.ip.dst === lab.addr.natbWan);
    assert.ok(requests.length >= 1, `no echo request from ${lab.addr.natbWan} among ${packets.length} packets`);
    assert.ok(replies.length >= 1, `no echo reply to ${lab.addr.natbWan} among ${packets.length} packets`);
    assert.equal(requests[0]!.transport?.kind, "icmp");
  });
});

for (const naptKind of ["random", "fully-random"] as const satisfies readonly NaptKind[]) {
  test(`${naptKind} NAPT maps ports per destination`, { timeout: TEST_TIMEOUT_MS }, async () => {
    const lab = await Lab.up({ naptKind });
    try {
      const rules = await lab.exec("natb", ["nft", "list", "table", "ip", "cyphonic_nat"]);
      assert.match(rules.stdout, new RegExp(`masquerade ${naptKind}`));

      const { seen } = await sendFromOneSocket(lab, ["cn2", "cloud"], "edm");
      assert.equal(seen.length, 2);
      assert.equal(seen[0]!.address, lab.addr.natbWan);
      assert.equal(seen[1]!.address, lab.addr.natbWan);
      // NOTE: the kernel draws each port at random, so this fails by chance
      // about once in the size of the port range (tens of thousands of runs).
      assert.notEqual(seen[0]!.port, seen[1]!.port);
    } finally {
      await lab.down();
    }
  });
}

test("down removes every lab namespace", { timeout: TEST_TIMEOUT_MS }, async () => {
  const lab = await Lab.up();
  assert.equal(labNamespaces(lab.prefix).length, LAB_HOSTS.length);
  await lab.down();
  assert.deepEqual(labNamespaces(lab.prefix), []);
  // A second call is a no-op.
  await lab.down();
  assert.deepEqual(labNamespaces(lab.prefix), []);
});
