// The adapter's DHCP server against real clients, busybox udhcpc and ISC
// dhclient, in network namespaces of its own:
//
//   client ns: cl1 (reserved MAC), cl2 (unknown MAC)
//        |  veth pairs
//   server ns: bridge lan0 100.64.0.3/16 with ports lp1, lp2; the server
//              runs here, bound to lan0
//              wan0 198.18.77.1/24, the default route
//        |  veth pair
//   wan ns:    wc0 198.18.77.2/24, MAC reserved too, so only the interface
//              binding stops the server from replying to it
//
// Needs root, because it creates namespaces.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DHCPDISCOVER, OPTION_DHCP_MESSAGE_TYPE, OPTION_INTERFACE_MTU } from "../../firmware/src/adapter/dhcp/constants.js";
import { decodeMessage } from "../../firmware/src/adapter/dhcp/message.js";
import { readParameterRequestList, readU8Option } from "../../firmware/src/adapter/dhcp/options.js";
import type { DhcpLease } from "../../firmware/src/adapter/dhcp/types.js";
import { startCapture, type Capture } from "./capture.js";
import { NamespaceProcess } from "./lab-process.js";
import type { DecodedPacket } from "./packet.js";
import { installTeardownHandlers, registerLab, unregisterLab } from "./teardown.js";

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const FIXTURE = path.join(REPO_ROOT, "test", "lab", "fixtures", "dhcp-server.ts");
const CLIENT_PACKAGES = ["udhcpc", "isc-dhcp-client", "tcpdump", "iproute2"];

const SERVER_ADDRESS = "100.64.0.3";
const CLIENT_MAC = "02:c7:00:00:00:07";
const CLIENT_ADDRESS = "100.64.0.7";
const MOVED_ADDRESS = "100.64.0.17";
const WRONG_ADDRESS = "100.64.0.99";
const UNKNOWN_MAC = "02:c7:00:00:00:99";
const WAN_MAC = "02:c7:00:00:00:08";
const WAN_RESERVED_ADDRESS = "100.64.0.8";
const MTU_BYTES = 1420;
const DOMAIN_NAME = "lab.cyphonic.internal";
// T1 is 5 s, so dhclient renews within the test; udhcpc raises leases below
// its own minimum, so its renewals are started with SIGUSR1.
const LEASE_SECONDS = 10;

interface Status {
  counters: Record<string, number>;
  leases: DhcpLease[];
}

interface ScriptCall {
  event: string;
  env: Map<string, string>;
}

function run(argv: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) => {
      let code = 0;
      if (err) code = typeof err.code === "number" ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function runOrThrow(argv: string[]): Promise<string> {
  const result = await run(argv);
  if (result.code !== 0) throw new Error(`'${argv.join(" ")}' failed with exit code ${result.code}: ${result.stderr}`);
  return result.stdout;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(100);
  }
}

function ensurePackages(): void {
  const missing = CLIENT_PACKAGES.filter((name) => {
    const result = spawnSync("dpkg-query", ["-W", "-f=${Status}", name], { encoding: "utf8" });
    return !result.stdout.includes("install ok installed");
  });
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = spawnSync("apt-get", ["update", "-qq"], { env, encoding: "utf8", timeout: 300_000 });
  if (update.status !== 0) throw new Error(`apt-get update failed: ${update.stderr}`);
  const install = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { env, encoding: "utf8", timeout: 300_000 });
  if (install.status !== 0) throw new Error(`installing ${missing.join(" ")} failed: ${install.stderr}`);
}

/** Namespaces, links and processes of one run, removed by down() or, on a signal, by downSync(). */
class DhcpLab {
  readonly prefix = `cydh${randomBytes(2).toString("hex")}`;
  readonly ns = { server: `${this.prefix}-srv`, client: `${this.prefix}-cli`, wan: `${this.prefix}-wan` };
  readonly workDir = mkdtempSync(path.join(tmpdir(), `${this.prefix}-`));
  private readonly processes = new Set<NamespaceProcess>();

  async up(): Promise<void> {
    installTeardownHandlers();
    registerLab(this);
    const { server, client, wan } = this.ns;
    for (const ns of [server, client, wan]) {
      await runOrThrow(["ip", "netns", "add", ns]);
      await runOrThrow(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    await runOrThrow(["ip", "-n", server, "link", "add", "lan0", "type", "bridge"]);
    await runOrThrow(["ip", "-n", server, "addr", "add", `${SERVER_ADDRESS}/16`, "dev", "lan0"]);
    await runOrThrow(["ip", "-n", server, "link", "set", "lan0", "up"]);
    for (const [clientIf, mac, port] of [
      ["cl1", CLIENT_MAC, "lp1"],
      ["cl2", UNKNOWN_MAC, "lp2"],
    ] as const) {
      await runOrThrow(["ip", "link", "add", "name", clientIf, "address", mac, "netns", client, "type", "veth", "peer", "name", port, "netns", server]);
      await runOrThrow(["ip", "-n", server, "link", "set", port, "master", "lan0", "up"]);
      await runOrThrow(["ip", "-n", client, "link", "set", clientIf, "up"]);
    }
    await runOrThrow(["ip", "link", "add", "name", "wc0", "address", WAN_MAC, "netns", wan, "type", "veth", "peer", "name", "wan0", "netns", server]);
    await runOrThrow(["ip", "-n", server, "addr", "add", "198.18.77.1/24", "dev", "wan0"]);
    await runOrThrow(["ip", "-n", server, "link", "set", "wan0", "up"]);
    // A socket without SO_BINDTODEVICE would send 255.255.255.255 out of this route's interface.
    await runOrThrow(["ip", "-n", server, "route", "add", "default", "via", "198.18.77.2"]);
    await runOrThrow(["ip", "-n", wan, "addr", "add", "198.18.77.2/24", "dev", "wc0"]);
    await runOrThrow(["ip", "-n", wan, "link", "set", "wc0", "up"]);
  }

  spawn(ns: string, argv: string[], env: Record<string, string> = {}): NamespaceProcess {
    const child = new NamespaceProcess(ns, argv, { cwd: REPO_ROOT, env, logFile: path.join(this.workDir, `${path.basename(argv[0]!)}.log`) });
    this.processes.add(child);
    return child;
  }

  exec(ns: string, argv: string[], timeoutMs = 10_000) {
    return run(["ip", "netns", "exec", ns, ...argv], timeoutMs);
  }

  capture(ns: string, iface: string, filter: string): Promise<Capture> {
    return startCapture((argv) => this.spawn(ns, argv), iface, filter, path.join(this.workDir, `${ns}-${iface}.pcap`));
  }

  async down(): Promise<void> {
    await Promise.all([...this.processes].map((child) => child.kill()));
    this.downSync();
  }

  downSync(): void {
    for (const child of this.processes) child.killGroupSync();
    for (const ns of Object.values(this.ns)) spawnSync("ip", ["netns", "del", ns]);
    unregisterLab(this);
  }
}

/** Parses the blocks that the client scripts append: "=== EVENT", then `env` output. */
/**
 * Ends each block the event scripts append. The header, the environment and
 * this line are separate writes, so a reader can see a block whose
 * environment is not there yet; such a block is left for the next read.
 */
const BLOCK_END = "--- end of event";

function readScriptCalls(file: string): ScriptCall[] {
  if (!existsSync(file)) return [];
  const calls: ScriptCall[] = [];
  for (const block of readFileSync(file, "utf8").split(/^=== /m).slice(1)) {
    const [event = "", ...lines] = block.split("\n");
    if (!lines.includes(BLOCK_END)) break;
    const env = new Map<string, string>();
    for (const line of lines) {
      const eq = line.indexOf("=");
      if (eq > 0) env.set(line.slice(0, eq), line.slice(eq + 1));
    }
    calls.push({ event: event.trim(), env });
  }
  return calls;
}

function writeScript(file: string, body: string): void {
  writeFileSync(file, `#!/bin/sh\n${body}`);
  chmodSync(file, 0o755);
}

describe("dhcp server with real clients", { timeout: 120_000 }, () => {
  let lab: DhcpLab;
  let server: NamespaceProcess;
  let wanCapture: Capture;
  let reservationsFile: string;
  let statusFile: string;
  let udhcpcScript: string;
  let dhclientScript: string;

  const readStatus = (): Status => JSON.parse(readFileSync(statusFile, "utf8")) as Status;
  const counter = (name: string): number => readStatus().counters[name] ?? 0;
  const waitForCounter = (name: string, atLeast: number, timeoutMs: number) =>
    waitFor(`counter ${name} >= ${atLeast}`, () => (counter(name) >= atLeast ? counter(name) : undefined), timeoutMs);
  const setReservations = (reservations: object[]) => writeFileSync(reservationsFile, JSON.stringify(reservations));
  const defaultReservations = [
    { mac: CLIENT_MAC, address: CLIENT_ADDRESS, hostname: "sensor-7" },
    { mac: WAN_MAC, address: WAN_RESERVED_ADDRESS },
  ];
  const waitForCall = (file: string, what: string, match: (call: ScriptCall) => boolean, after = 0, timeoutMs = 15_000) =>
    waitFor(what, () => readScriptCalls(file).slice(after).find(match), timeoutMs);

  async function interfaceState(ns: string, iface: string): Promise<{ addresses: string[]; mtu: number }> {
    const output = await runOrThrow(["ip", "-n", ns, "-j", "addr", "show", "dev", iface]);
    const [link] = JSON.parse(output) as { mtu: number; addr_info: { family: string; local: string; prefixlen: number }[] }[];
    assert.ok(link, `interface ${iface} exists`);
    return { addresses: link.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`), mtu: link.mtu };
  }

  async function resetInterface(iface: string): Promise<void> {
    await runOrThrow(["ip", "-n", lab.ns.client, "addr", "flush", "dev", iface]);
    await runOrThrow(["ip", "-n", lab.ns.client, "link", "set", "dev", iface, "mtu", "1500"]);
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error("the DHCP lab test needs root, because it creates network namespaces");
    ensurePackages();
    lab = new DhcpLab();
    await lab.up();
    reservationsFile = path.join(lab.workDir, "reservations.json");
    statusFile = path.join(lab.workDir, "status.json");
    setReservations(defaultReservations);
    const configFile = path.join(lab.workDir, "server.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        options: {
          interfaceName: "lan0",
          serverAddress: SERVER_ADDRESS,
          subnetMask: "255.255.0.0",
          router: SERVER_ADDRESS,
          dnsServers: [SERVER_ADDRESS],
          domainName: DOMAIN_NAME,
          mtuBytes: MTU_BYTES,
          leaseSeconds: LEASE_SECONDS,
          leaseFile: path.join(lab.workDir, "state", "leases.json"),
        },
        reservationsFile,
        statusFile,
      }),
    );
    // The script configures the interface like a real one, so unicast renewals have a source address.
    udhcpcScript = path.join(lab.workDir, "udhcpc.sh");
    writeScript(
      udhcpcScript,
      `{ echo "=== $1"; env; echo "${BLOCK_END}"; } >> "$DUMP_FILE"
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ;;
esac
exit 0
`,
    );
    // dhclient clears the environment before it runs the script, so the dump file is written into the script.
    dhclientScript = path.join(lab.workDir, "dhclient.sh");
    writeScript(
      dhclientScript,
      `{ echo "=== $reason"; env; echo "${BLOCK_END}"; } >> "${path.join(lab.workDir, "dhclient-events.txt")}"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
    ;;
  EXPIRE|FAIL|RELEASE|STOP) ip -4 addr flush dev "$interface" ;;
esac
exit 0
`,
    );
    wanCapture = await lab.capture(lab.ns.wan, "wc0", "udp port 67 or udp port 68");
    server = lab.spawn(lab.ns.server, [process.execPath, "--import", "tsx", FIXTURE, configFile]);
    await server.waitForLine(/dhcp-fixture ready/, 20_000);
  });

  after(async () => {
    await lab?.down();
    if (lab) rmSync(lab.workDir, { recursive: true, force: true });
  });

  describe("busybox udhcpc", () => {
    let udhcpc: NamespaceProcess;
    const dumpFile = () => path.join(lab.workDir, "udhcpc-events.txt");

    test("gets reserved address and options", async () => {
      const capture = await lab.capture(lab.ns.client, "cl1", "udp port 67");
      // -r puts option 50 into the DISCOVER only: udhcpc then requests the offered address, so it draws no NAK.
      udhcpc = lab.spawn(lab.ns.client, ["udhcpc", "-f", "-i", "cl1", "-s", udhcpcScript, "-t", "5", "-T", "1", "-r", WRONG_ADDRESS], { DUMP_FILE: dumpFile() });
      const bound = await waitForCall(dumpFile(), "udhcpc bound", (call) => call.event === "bound");
      const packets = await capture.stop();

      assert.equal(bound.env.get("ip"), CLIENT_ADDRESS);
      assert.equal(bound.env.get("subnet"), "255.255.0.0");
      assert.equal(bound.env.get("router"), SERVER_ADDRESS);
      assert.equal(bound.env.get("dns"), SERVER_ADDRESS);
      assert.equal(bound.env.get("serverid"), SERVER_ADDRESS);
      assert.equal(bound.env.get("domain"), DOMAIN_NAME);
      assert.equal(bound.env.get("hostname"), "sensor-7");
      assert.equal(bound.env.get("lease"), String(LEASE_SECONDS));
      assert.equal(bound.env.get("mtu"), String(MTU_BYTES));
      assert.deepEqual(await interfaceState(lab.ns.client, "cl1"), { addresses: [`${CLIENT_ADDRESS}/16`], mtu: MTU_BYTES });
      // The fixture writes its status every 100 ms, so counters are polled.
      assert.equal(await waitForCounter("dhcp.ack.selecting", 1, 2000), 1);
      assert.equal(counter("dhcp.nak.selecting"), 0);

      // udhcpc did not ask for option 26 and still got it.
      const discover = packets.map((p: DecodedPacket) => decodeMessage(p.payload)).find((d) => d.ok && readU8Option(d.message.options, OPTION_DHCP_MESSAGE_TYPE) === DHCPDISCOVER);
      assert.ok(discover?.ok, "captured udhcpc's DISCOVER");
      const requested = readParameterRequestList(discover.message.options);
      assert.ok(requested.length > 0, "udhcpc sends option 55");
      assert.ok(!requested.includes(OPTION_INTERFACE_MTU), `udhcpc requested ${requested.join(",")}`);
      assert.ok(readStatus().leases.some((l) => l.mac === CLIENT_MAC && l.address === CLIENT_ADDRESS));
    });

    test("renewal is acked", async () => {
      const calls = readScriptCalls(dumpFile()).length;
      const renewed = counter("dhcp.ack.renewing");
      process.kill(udhcpc.pid, "SIGUSR1");
      const renew = await waitForCall(dumpFile(), "udhcpc renew", (call) => call.event === "renew", calls);
      assert.equal(renew.env.get("ip"), CLIENT_ADDRESS);
      assert.equal(await waitForCounter("dhcp.ack.renewing", renewed + 1, 5000), renewed + 1);
    });

    test("renewal for moved reservation gets nak", async () => {
      const calls = readScriptCalls(dumpFile()).length;
      const naks = counter("dhcp.nak.renewing");
      setReservations([{ mac: CLIENT_MAC, address: MOVED_ADDRESS }, defaultReservations[1]!]);
      try {
        process.kill(udhcpc.pid, "SIGUSR1");
        await waitForCall(dumpFile(), "udhcpc nak", (call) => call.event === "nak", calls);
        assert.equal(await waitForCounter("dhcp.nak.renewing", naks + 1, 5000), naks + 1);
        // busybox waits 3 s after a NAK, then starts over with a DISCOVER.
        const bound = await waitForCall(dumpFile(), "udhcpc bound to the moved address", (call) => call.event === "bound" && call.env.get("ip") === MOVED_ADDRESS, calls);
        assert.equal(bound.env.get("router"), SERVER_ADDRESS);
        assert.deepEqual((await interfaceState(lab.ns.client, "cl1")).addresses, [`${MOVED_ADDRESS}/16`]);
        assert.ok(!readStatus().leases.some((l) => l.address === CLIENT_ADDRESS), "the lease of the old address ended");
      } finally {
        setReservations(defaultReservations);
        await udhcpc.kill();
        await resetInterface("cl1");
      }
    });
  });

  describe("ISC dhclient", () => {
    let dhclient: NamespaceProcess;
    const dumpFile = () => path.join(lab.workDir, "dhclient-events.txt");
    const files = () => ({
      conf: path.join(lab.workDir, "dhclient.conf"),
      leases: path.join(lab.workDir, "dhclient.leases"),
      pid: path.join(lab.workDir, "dhclient.pid"),
    });
    const dhclientArgs = () => ["-4", "-cf", files().conf, "-lf", files().leases, "-pf", files().pid, "-sf", dhclientScript];

    test("init-reboot with stale lease gets nak", async () => {
      writeFileSync(files().conf, "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name, interface-mtu;\ntimeout 20;\nretry 1;\n");
      // A lease that has not expired makes dhclient start in INIT-REBOOT and request it.
      writeFileSync(
        files().leases,
        `lease {
  interface "cl1";
  fixed-address ${WRONG_ADDRESS};
  option subnet-mask 255.255.0.0;
  option dhcp-server-identifier ${SERVER_ADDRESS};
  option dhcp-lease-time 600;
  renew 4 2099/01/01 00:00:00;
  rebind 4 2099/01/01 00:00:00;
  expire 4 2099/01/01 00:00:00;
}
`,
      );
      const naks = counter("dhcp.nak.init_reboot");
      dhclient = lab.spawn(lab.ns.client, ["dhclient", "-d", "-v", ...dhclientArgs(), "cl1"]);
      const bound = await waitForCall(dumpFile(), "dhclient BOUND", (call) => call.event === "BOUND");
      assert.equal(await waitForCounter("dhcp.nak.init_reboot", naks + 1, 2000), naks + 1);
      assert.equal(bound.env.get("new_ip_address"), CLIENT_ADDRESS);
      assert.equal(bound.env.get("new_subnet_mask"), "255.255.0.0");
      assert.equal(bound.env.get("new_routers"), SERVER_ADDRESS);
      assert.equal(bound.env.get("new_domain_name_servers"), SERVER_ADDRESS);
      assert.equal(bound.env.get("new_domain_name"), DOMAIN_NAME);
      assert.equal(bound.env.get("new_interface_mtu"), String(MTU_BYTES));
      assert.equal(bound.env.get("new_dhcp_lease_time"), String(LEASE_SECONDS));
      assert.equal(bound.env.get("new_dhcp_server_identifier"), SERVER_ADDRESS);
      assert.deepEqual(await interfaceState(lab.ns.client, "cl1"), { addresses: [`${CLIENT_ADDRESS}/16`], mtu: MTU_BYTES });
    });

    test("renews at T1", async () => {
      const renewed = counter("dhcp.ack.renewing");
      const calls = readScriptCalls(dumpFile()).length;
      // T1 is 5 s; dhclient picks a time between about 0.75 T1 and T1.
      const renew = await waitForCall(dumpFile(), "dhclient RENEW", (call) => call.event === "RENEW", calls, 10_000);
      assert.equal(renew.env.get("new_ip_address"), CLIENT_ADDRESS);
      assert.ok((await waitForCounter("dhcp.ack.renewing", renewed + 1, 2000)) > renewed, "the server counted a renewal ACK");
    });

    test("release ends the lease", async () => {
      const released = counter("dhcp.lease.released");
      const result = await lab.exec(lab.ns.client, ["dhclient", "-r", "-v", ...dhclientArgs(), "cl1"], 20_000);
      assert.equal(result.code, 0, result.stderr);
      await dhclient.exited;
      assert.equal(await waitForCounter("dhcp.lease.released", released + 1, 5000), released + 1);
      assert.ok(!readStatus().leases.some((l) => l.mac === CLIENT_MAC));
      await resetInterface("cl1");
    });
  });

  test("unknown MAC gets no answer", async () => {
    const unknown = counter("dhcp.drop.unknown_client");
    const offers = counter("dhcp.tx.offer");
    const dump = path.join(lab.workDir, "udhcpc-unknown.txt");
    const result = await lab.exec(lab.ns.client, ["env", `DUMP_FILE=${dump}`, "udhcpc", "-f", "-n", "-i", "cl2", "-s", udhcpcScript, "-t", "3", "-T", "1"], 15_000);
    assert.equal(result.code, 1, "udhcpc -n exits 1 without a lease");
    assert.ok(!readScriptCalls(dump).some((call) => call.event === "bound"));
    assert.equal(await waitForCounter("dhcp.drop.unknown_client", unknown + 3, 2000), unknown + 3);
    assert.equal(counter("dhcp.tx.offer"), offers);
    // Three DISCOVERs within the rate limiter's interval give one log line.
    const lines = server.output().split("\n").filter((line) => line.includes("no reservation") && line.includes(UNKNOWN_MAC));
    assert.equal(lines.length, 1, lines.join("\n"));
  });

  test("discover on WAN interface gets no answer", async () => {
    const received = counter("dhcp.rx.datagrams");
    const dump = path.join(lab.workDir, "udhcpc-wan.txt");
    const result = await lab.exec(lab.ns.wan, ["env", `DUMP_FILE=${dump}`, "udhcpc", "-f", "-n", "-i", "wc0", "-s", udhcpcScript, "-t", "3", "-T", "1"], 15_000);
    assert.equal(result.code, 1, "udhcpc -n exits 1 without a lease");
    assert.ok(!readScriptCalls(dump).some((call) => call.event === "bound"));
    // Two status periods, so a datagram counted after the last DISCOVER would show.
    await delay(300);
    assert.equal(counter("dhcp.rx.datagrams"), received, "nothing from the WAN side reached the server");

    // No server reply left through wan0 during the whole run, while the
    // clients on lan0 got broadcast OFFERs, ACKs and NAKs.
    const packets = await wanCapture.stop();
    const fromClient = packets.filter((p) => p.transport?.kind === "udp" && p.transport.srcPort === 68);
    const fromServer = packets.filter((p) => p.transport?.kind === "udp" && p.transport.srcPort === 67);
    assert.ok(fromClient.length >= 3, `the capture saw the WAN client's DISCOVERs (${fromClient.length})`);
    assert.equal(fromServer.length, 0);
    assert.ok(counter("dhcp.tx.offer") >= 3, "the server did send replies on lan0");
  });
});
