// The adapter end to end: unmodified general nodes (gn, gn2) behind the
// adapter get their virtual IPs by real DHCP clients and reach cn1 (behind
// another NAPT) through the overlay, each under its own identity.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Lab, LabHost, LabProcess } from "./harness.js";
import { Overlay, OverlayNode } from "./overlay-fixture.js";

const FIXTURES = path.resolve("test/lab/fixtures");
const ADAPTER_MTU = "1420";
/** The general nodes' NIC, as scripts/lab.sh names it. */
const GN_IF = "eth0";

/** Writes an event script that records into dir (dhclient passes no environment of its own caller). */
function script(dir: string, fixture: string): string {
  const text = fs.readFileSync(path.join(FIXTURES, fixture), "utf8").replace(/^dir=.*$/m, `dir=${dir}`);
  const file = path.join(dir, fixture);
  fs.writeFileSync(file, text, { mode: 0o755 });
  return file;
}

function readEnv(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).replace(/^'|'$/g, "");
  }
  return out;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

describe("adapter", { timeout: 300_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn1: OverlayNode;
  let adapter: OverlayNode;
  let gn: { fqdn: string; virtualIP: string };
  let gn2: { fqdn: string; virtualIP: string };
  let records: Record<"gn" | "gn2", string>;
  let gn2Dhclient: LabProcess | undefined;

  const setResolver = (host: LabHost, server: string) => {
    const dir = `/etc/netns/${lab.ns[host]}`;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "resolv.conf"), `nameserver ${server}\noptions timeout:5 attempts:2\n`);
  };

  before(async () => {
    lab = await Lab.up();
    overlay = new Overlay(lab);
    await overlay.startCloud();
    cn1 = await overlay.addNode("cn1", "cn1");
    await overlay.admin("node", "add", "ad1", "--kind", "adapter");
    gn = await overlay.addGeneralNode("ad1", "gn1", lab.mac.gn);
    gn2 = await overlay.addGeneralNode("ad1", "gn2", lab.mac.gn2);
    adapter = await overlay.startNode("adapter", "ad1", lab.iface.adapterLan);
    await adapter.process.waitForLine(/"adapter ready"/, 20_000);
    await adapter.process.waitForLine(/"general nodes updated from the cloud"/, 20_000);
    overlay.useNodeResolver("cn1");
    records = { gn: fs.mkdtempSync(path.join(overlay.dir, "gn-")), gn2: fs.mkdtempSync(path.join(overlay.dir, "gn2-")) };
  });

  after(async () => {
    overlay?.cleanup();
    if (lab) for (const host of ["gn", "gn2"] as const) fs.rmSync(`/etc/netns/${lab.ns[host]}`, { recursive: true, force: true });
    await lab?.down();
  });

  test("udhcpc gets the virtual IP, router, DNS and MTU", async () => {
    const udhcpc = lab.spawn("gn", ["udhcpc", "-f", "-i", GN_IF, "-s", script(records.gn, "udhcpc-script.sh"), "-t", "10", "-T", "1"]);
    await waitFor("udhcpc bound", () => fs.existsSync(path.join(records.gn, "bound.env")), 20_000);
    const env = readEnv(path.join(records.gn, "bound.env"));
    const vip = adapter.virtualIP;
    assert.equal(env.ip, gn.virtualIP);
    assert.equal(env.router, vip);
    assert.equal(env.dns, vip);
    assert.equal(env.mtu, ADAPTER_MTU, "option 26 arrives although udhcpc did not ask for it");
    assert.equal(env.subnet, "255.255.0.0");
    assert.equal(env.domain, "cyphonic.internal");
    assert.equal(env.serverid, vip);
    setResolver("gn", env.dns!);

    // SIGUSR1 makes udhcpc renew at once (RENEWING: unicast to the server).
    // udhcpc keeps running and renews by itself for the rest of the suite.
    process.kill(udhcpc.pid, "SIGUSR1");
    await waitFor("udhcpc renewal", () => fs.existsSync(path.join(records.gn, "renew.env")), 10_000);
    assert.equal(readEnv(path.join(records.gn, "renew.env")).ip, gn.virtualIP);
  });

  test("dhclient gets its lease after a NAK for a wrong address", async () => {
    // A lease file naming a wrong address makes dhclient start in INIT-REBOOT
    // and request it; the server must NAK, and the client then gets the right one.
    const leases = path.join(records.gn2, "dhclient.leases");
    fs.writeFileSync(
      leases,
      `lease {\n  interface "${GN_IF}";\n  fixed-address 100.64.250.250;\n  option subnet-mask 255.255.0.0;\n` +
        `  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n`,
    );
    const before = (await overlay.status("ad1")).counters;
    // -d keeps dhclient in the foreground, renewing, until the lab is taken down.
    gn2Dhclient = lab.spawn("gn2", ["dhclient", "-v", "-d", "--no-pid", "-sf", script(records.gn2, "dhclient-script.sh"), "-lf", leases, GN_IF]);
    await waitFor("dhclient bound", () => fs.existsSync(path.join(records.gn2, "dhclient-BOUND.env")), 30_000);
    const env = readEnv(path.join(records.gn2, "dhclient-BOUND.env"));
    assert.equal(env.new_ip_address, gn2.virtualIP);
    assert.equal(env.new_routers, adapter.virtualIP);
    assert.equal(env.new_domain_name_servers, adapter.virtualIP);
    assert.equal(env.new_interface_mtu, ADAPTER_MTU);
    const afterCounters = (await overlay.status("ad1")).counters;
    const naks = (afterCounters["dhcp.tx.nak"] ?? 0) - (before["dhcp.tx.nak"] ?? 0);
    assert.ok(naks >= 1, `NAKs sent: ${naks}; counters ${JSON.stringify(afterCounters)}`);
    setResolver("gn2", env.new_domain_name_servers!);
  });

  test("dig from gn resolves cn1, NODATA for AAAA, any case", async () => {
    const a = await lab.exec("gn", ["dig", "+short", "+time=10", cn1.fqdn, "A"], { timeoutMs: 25_000 });
    assert.equal(a.stdout.trim(), cn1.virtualIP);
    const mixed = await lab.exec("gn", ["dig", "+short", "+time=10", "Cn1.CYPHONIC.Internal", "A"], { timeoutMs: 25_000 });
    assert.equal(mixed.stdout.trim(), cn1.virtualIP);
    const aaaa = await lab.exec("gn", ["dig", "+time=10", cn1.fqdn, "AAAA"], { timeoutMs: 25_000 });
    assert.match(aaaa.stdout, /status: NOERROR/);
    assert.match(aaaa.stdout, /ANSWER: 0,/);
  });

  test("ping by name gn to cn1 and cn1 to gn", async () => {
    const there = await lab.exec("gn", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn1.fqdn], { timeoutMs: 25_000 });
    assert.match(there.stdout, /3 received/, there.stdout + there.stderr);
    const back = await lab.exec("cn1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", gn.fqdn], { timeoutMs: 25_000 });
    assert.match(back.stdout, /3 received/, back.stdout + back.stderr);
  });

  test("two general nodes appear at cn1 with their own virtual IPs", async () => {
    const p2 = await lab.exec("gn2", ["ping", "-c", "3", "-i", "0.2", "-W", "2", cn1.fqdn], { timeoutMs: 25_000 });
    assert.match(p2.stdout, /3 received/, p2.stdout + p2.stderr);
    const status = await overlay.status("cn1");
    const seen = new Map(status.tunnels.map((t) => [t.fqdn, t.virtualIP]));
    assert.equal(seen.get(gn.fqdn), gn.virtualIP);
    assert.equal(seen.get(gn2.fqdn), gn2.virtualIP);
    assert.notEqual(gn.virtualIP, gn2.virtualIP);
  });

  test("iperf3 with MTU 1500 and a 4 MB HTTP download complete", async () => {
    const mtu = await lab.exec("gn", ["cat", `/sys/class/net/${GN_IF}/mtu`]);
    assert.equal(mtu.stdout.trim(), "1500", "gn keeps MTU 1500: MSS clamping and PMTU must cover it");
    const server = lab.spawn("cn1", ["iperf3", "-s", "-1", "--forceflush", "-B", cn1.virtualIP]);
    await server.waitForLine(/Server listening/, 5_000);
    const r = await lab.exec("gn", ["iperf3", "-c", cn1.virtualIP, "-t", "3", "-J"], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
    assert.ok(report.end.sum_received.bytes > 1_000_000);
    console.log(`iperf3 gn -> cn1 through the adapter: ${(report.end.sum_received.bits_per_second / 1e6).toFixed(0)} Mbit/s`);

    const www = fs.mkdtempSync(path.join(overlay.dir, "www-"));
    const blob = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < blob.length; i += 4) blob.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(path.join(www, "blob"), blob);
    const httpd = lab.spawn("cn1", ["busybox", "httpd", "-f", "-p", `${cn1.virtualIP}:8080`, "-h", www]);
    await new Promise((res) => setTimeout(res, 300));
    const dl = await lab.exec("gn", ["sh", "-c", `wget -q -O - http://${cn1.fqdn}:8080/blob | sha256sum`], { timeoutMs: 60_000 });
    await httpd.kill();
    const expected = (await lab.exec("cn1", ["sha256sum", path.join(www, "blob")])).stdout.split(" ")[0];
    assert.equal(dl.stdout.split(" ")[0], expected, dl.stderr);
  });

  test("a DF packet over the tunnel MTU gets fragmentation-needed", async () => {
    const r = await lab.exec("gn", ["ping", "-c", "2", "-M", "do", "-s", "1450", "-W", "2", cn1.virtualIP], { timeoutMs: 15_000 });
    assert.match(r.stdout + r.stderr, /mtu ?= ?1420/i);
  });

  test("unregistered MAC and the WAN side get no lease", async () => {
    const before = (await overlay.status("ad1")).counters;
    // gn2 pretends to be an unknown device for one attempt.
    await lab.exec("gn2", ["ip", "link", "set", GN_IF, "address", "02:00:00:00:0a:99"]);
    const unknown = await lab.exec("gn2", ["udhcpc", "-n", "-q", "-f", "-i", GN_IF, "-s", "/bin/true", "-t", "3", "-T", "1"], { timeoutMs: 20_000 });
    await lab.exec("gn2", ["ip", "link", "set", GN_IF, "address", lab.mac.gn2]);
    assert.notEqual(unknown.code, 0, `an unknown MAC got a lease: ${unknown.stdout}${unknown.stderr}`);
    // nata's LAN side is the adapter's WAN segment.
    const wan = await lab.exec("nata", ["udhcpc", "-n", "-q", "-f", "-i", "lan0", "-s", "/bin/true", "-t", "3", "-T", "1"], { timeoutMs: 20_000 });
    assert.notEqual(wan.code, 0, `the WAN side got a lease: ${wan.stdout}${wan.stderr}`);
    const afterCounters = (await overlay.status("ad1")).counters;
    const unknownDrops = (afterCounters["dhcp.drop.unknown_client"] ?? 0) - (before["dhcp.drop.unknown_client"] ?? 0);
    assert.ok(unknownDrops >= 1, `unknown-MAC drops ${unknownDrops}: ${JSON.stringify(afterCounters)}`);
  });

  test("a device using another's address gets nothing through", async () => {
    // gn2's own DHCP client would put its leased address back at the next renewal.
    await gn2Dhclient?.kill();
    const before = (await overlay.status("ad1")).counters;
    await lab.exec("gn2", ["ip", "addr", "flush", "dev", GN_IF]);
    await lab.exec("gn2", ["ip", "addr", "add", `${gn.virtualIP}/16`, "dev", GN_IF]);
    const spoofed = await lab.exec("gn2", ["ping", "-c", "3", "-i", "0.2", "-W", "1", cn1.virtualIP], { timeoutMs: 15_000 });
    // A static address with no lease at all is stopped the same way.
    await lab.exec("gn2", ["ip", "addr", "flush", "dev", GN_IF]);
    await lab.exec("gn2", ["ip", "addr", "add", "100.64.200.1/16", "dev", GN_IF]);
    const unleased = await lab.exec("gn2", ["ping", "-c", "3", "-i", "0.2", "-W", "1", cn1.virtualIP], { timeoutMs: 15_000 });
    await lab.exec("gn2", ["ip", "addr", "flush", "dev", GN_IF]);
    await lab.exec("gn2", ["ip", "addr", "add", `${gn2.virtualIP}/16`, "dev", GN_IF]);
    assert.match(spoofed.stdout, /0 received/, spoofed.stdout);
    assert.match(unleased.stdout, /0 received/, unleased.stdout);
    const afterCounters = (await overlay.status("ad1")).counters;
    const drops = (afterCounters["lan.spoofed_packets"] ?? 0) - (before["lan.spoofed_packets"] ?? 0);
    // The unleased address gets no proxy-ARP reply (strict reverse-path check), so only the spoofed pings reach the counter.
    assert.ok(drops >= 3, `spoofed packets dropped: ${drops}`);
    // gn itself is unaffected.
    const ok = await lab.exec("gn", ["ping", "-c", "2", "-i", "0.2", "-W", "2", cn1.virtualIP], { timeoutMs: 15_000 });
    assert.match(ok.stdout, /2 received/);
  });
});
