// The adapter end to end: unmodified general nodes (gn, gn2) behind the
// adapter get their virtual IPs by real DHCP clients and reach cn1 (behind
// another NAPT) through the overlay, each under its own identity. The
// adapter runs with the appliance firewall and drives fake status LEDs in a
// temporary directory.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Lab, LabHost, LabProcess } from "./harness.js";
import { CYPHONIC, Overlay, OverlayNode } from "./overlay-fixture.js";

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

// Trigger lists of a Raspberry Pi 4 on Raspberry Pi OS Bookworm, shortened.
const FAKE_LEDS = { ACT: "none timer oneshot heartbeat [mmc0] default-on", PWR: "none timer oneshot heartbeat mmc0 [default-on]" };

/** Creates ACT and PWR in `dir` with the attribute files of the LED class. */
function makeFakeLeds(dir: string): void {
  for (const [name, trigger] of Object.entries(FAKE_LEDS)) {
    const led = path.join(dir, name);
    fs.mkdirSync(led, { recursive: true });
    fs.writeFileSync(path.join(led, "trigger"), trigger + "\n");
    fs.writeFileSync(path.join(led, "brightness"), "0\n");
    fs.writeFileSync(path.join(led, "max_brightness"), "255\n");
    // The kernel creates these only with the timer trigger. The fake keeps them.
    fs.writeFileSync(path.join(led, "delay_on"), "500\n");
    fs.writeFileSync(path.join(led, "delay_off"), "500\n");
  }
}

/** Reads an LED as "trigger", "none BRIGHTNESS" or "timer ON/OFF", the attributes that tell the patterns apart. */
function ledPattern(dir: string, led: "ACT" | "PWR"): string {
  const read = (attribute: string) => fs.readFileSync(path.join(dir, led, attribute), "utf8").trim();
  const trigger = read("trigger");
  if (trigger === "timer") return `timer ${read("delay_on")}/${read("delay_off")}`;
  if (trigger === "none") return `none ${read("brightness")}`;
  return trigger;
}

/** ACT and PWR of the states the lab reaches, as docs/leds.md lists them. */
const LED_FILES = {
  online: "ACT none 255, PWR none 255",
  serving: "ACT heartbeat, PWR none 255",
  error: "ACT none 0, PWR timer 250/250",
  restored: "ACT mmc0, PWR default-on",
};

function ledFiles(dir: string): string {
  return `ACT ${ledPattern(dir, "ACT")}, PWR ${ledPattern(dir, "PWR")}`;
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
    makeFakeLeds(overlay.ledRoot("ad1"));
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

  /** Returns the packet counter of the appliance firewall's rule with `comment` in `chain`. */
  async function applianceCounter(chain: string, comment: string): Promise<number> {
    const listing = await lab.exec("adapter", ["nft", "list", "chain", "inet", "cyphonic_appliance", chain]);
    const rule = listing.stdout.split("\n").find((line) => line.includes(`comment "${comment}"`));
    assert.ok(rule, `no rule "${comment}" in chain ${chain}:\n${listing.stdout}`);
    const packets = /counter packets (\d+) /.exec(rule)?.[1];
    assert.ok(packets !== undefined, `no counter in ${rule}`);
    return Number(packets);
  }

  test("appliance firewall is loaded", async () => {
    const tables = await lab.exec("adapter", ["nft", "list", "tables"]);
    assert.match(tables.stdout, /^table inet cyphonic_appliance$/m);
    assert.match(tables.stdout, /^table inet cyphonic_adapter$/m);
    const input = await lab.exec("adapter", ["nft", "list", "chain", "inet", "cyphonic_appliance", "input"]);
    assert.match(input.stdout, new RegExp(`iifname "${lab.iface.adapterWan}" udp dport 7000 counter `), "the WAN define is the lab's WAN interface");
    assert.match(input.stdout, new RegExp(`iifname "${lab.iface.adapterLan}" udp dport 67 counter `), "the LAN define is the lab's LAN interface");
    assert.ok((await applianceCounter("input", "replies, and ICMP errors about known flows")) > 0, "the cloud's replies passed");
  });

  test("LEDs show online before any lease", async () => {
    const leds = overlay.ledRoot("ad1");
    await waitFor("the online pattern", () => ledFiles(leds) === LED_FILES.online, 5_000);
    assert.equal(ledFiles(leds), LED_FILES.online);
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
    // The lease shows at once, because the adapter refreshes the LEDs on every lease change.
    await waitFor("the serving pattern after gn's lease", () => ledFiles(overlay.ledRoot("ad1")) === LED_FILES.serving, 3_000);

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

  test("LAN services pass the appliance firewall", async () => {
    // The leases and lookups above went through these rules.
    assert.ok((await applianceCounter("input", "DHCP server")) > 0, "DHCP requests from gn and gn2");
    assert.ok((await applianceCounter("input", "DNS server over UDP")) > 0, "DNS queries from gn");
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
    assert.ok((await applianceCounter("forward", "LAN to overlay")) > 0, "forwarded traffic passed the appliance's forward chain");
  });

  test("rejected token shows error without retries", async () => {
    // A second adapter in the same namespace, with its own port, TUN name and
    // files, redeems a token that the AS never issued.
    await overlay.admin("node", "add", "ad2", "--kind", "adapter");
    const tokenFile = path.join(overlay.dir, "ad2.token");
    await overlay.admin("token", "create", "ad2", "--as-endpoint", `${lab.addr.cloud}:7400`, "--out", tokenFile);
    fs.writeFileSync(tokenFile, fs.readFileSync(tokenFile, "utf8").replace(/^token=.*$/m, "token=NotIssuedByTheAs_0123456789"));
    const leds = overlay.ledRoot("ad2");
    makeFakeLeds(leds);
    const config = overlay.writeAdapterConfig("ad2", { lanInterface: lab.iface.adapterLan, tunName: "cyph9", port: 7009, tokenFile });
    const rejectionsBefore = overlay.cloud.output().split("token redemption rejected").length;
    const ad2 = lab.spawn("adapter", ["node", CYPHONIC, "adapter", "--config", config], { logFile: path.join(overlay.dir, "ad2.log"), env: { CYPHONIC_LOG_LEVEL: "info" } });

    const line = await ad2.waitForLine(/"adapter start failed and is not retried/, 20_000);
    assert.match(line, /"code":"token_invalid"/);
    assert.match(line, /ask the operator for a new token/);
    await waitFor("the error pattern", () => ledFiles(leds) === LED_FILES.error, 3_000);
    // 8 s covers several of the unit's 3 s restart delays, so a retry would have shown by now.
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    const rejections = overlay.cloud.output().split("token redemption rejected").length - rejectionsBefore;
    assert.equal(rejections, 1, "the AS saw one redemption of the rejected token");
    assert.equal(ad2.output().split("adapter start failed").length - 1, 1, "one log line for the failure");
    assert.equal(ledFiles(leds), LED_FILES.error, "the error stays while the adapter runs");
    assert.ok(fs.existsSync(tokenFile), "a rejected token file is kept");

    await ad2.kill("SIGTERM");
    assert.equal(await ad2.exited, 0);
    assert.equal(ledFiles(leds), LED_FILES.restored, "the LEDs get their triggers back on exit");
  });
});
