// The appliance image end to end: the disk image that scripts/image built from
// the pi-gen stage boots in QEMU, provisions itself from a token file on its
// boot partition, and serves a general node behind its LAN NIC. The lab of
// scripts/lab.sh provides the cloud, the CYPHONIC node cn2, the NAPT router
// nata in front of the appliance's WAN, and the general node gn.
//
// Needs root, the disk image from scripts/image/image-test.sh (IMAGE_TEST_OUT,
// default image/work/test/out), and dist/cyphonic.cjs for the lab's cloud.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { NamespaceProcess } from "../lab/lab-process.js";
import {
  ApplianceVm,
  DiskImage,
  delay,
  listBootFiles,
  readDiskImage,
  readRootFile,
  rootFileExists,
  run,
  runChecked,
  sha256,
  writeBootFile,
} from "./vm.js";

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const CYPHONIC = path.join(REPO_ROOT, "dist", "cyphonic.cjs");
const LAB_SCRIPT = path.join(REPO_ROOT, "scripts", "lab.sh");
const UDHCPC_SCRIPT = path.join(REPO_ROOT, "test", "lab", "fixtures", "udhcpc-script.sh");
const PREFIX = process.env.IMAGE_LAB_PREFIX ?? "imgt1";
const OUT_DIR = process.env.IMAGE_TEST_OUT ?? path.join(REPO_ROOT, "image", "work", "test", "out");
const DOMAIN = "cyphonic.internal";
/** The host name that image/config gives the image, which pi-gen's stage1 writes. */
const TARGET_HOSTNAME = /^TARGET_HOSTNAME=(\S+)$/m.exec(fs.readFileSync(path.join(REPO_ROOT, "image", "config"), "utf8"))?.[1];
const AS_PORT = 7400;
const TUNNEL_PORT = 7000;
/** Bytes of the TCP stream through the adapter: about 3,000 full-size packets, so many batches. */
const STREAM_BYTES = 4 * 1024 * 1024;
const STREAM_PORT = 5001;
const LAB_FIXTURES = path.join(REPO_ROOT, "test", "lab", "fixtures");

// The appliance's WAN is a port of a bridge on nata's LAN, where nata serves
// DHCP from this pool. Its LAN is a port of the lab's bridge to gn and gn2.
const WAN_BRIDGE = "brwan";
const WAN_TAP = "tapwan";
const LAN_TAP = "taplan";
const WAN_MAC = "52:54:00:c0:00:01";
const LAN_MAC = "52:54:00:c0:00:02";
const WAN_POOL = { start: "192.168.1.100", end: "192.168.1.109" };

// Measured on a 2-core x86-64 machine without KVM for arm64 (TCG): the
// kernel reaches the login prompt after about 90 s, and the adapter serves
// about a minute later. The limits leave room for a loaded machine.
const FIRST_BOOT_TIMEOUT_MS = 10 * 60_000;
const BOOT_TIMEOUT_MS = 8 * 60_000;
const POWER_OFF_TIMEOUT_MS = 3 * 60_000;

interface LabNamespaces {
  cloud: string;
  cn2: string;
  nata: string;
  adapter: string;
  gn: string;
}

interface CloudEvent {
  msg: string;
  node?: number;
  fqdn?: string;
  endpoint?: string;
  napt?: boolean;
  local?: string[];
}

interface Identity {
  nodeId: number;
  fqdn: string;
  virtualIP: string;
}

async function labScript(args: string[]): Promise<string> {
  return runChecked([LAB_SCRIPT, ...args], 60_000);
}

function parseKeyValues(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match !== null) values.set(match[1]!, match[2]!);
  }
  return values;
}

function readEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).replace(/^'|'$/g, "");
  }
  return out;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, detail: () => string = () => ""): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await delay(500);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}\n${detail()}`);
}

describe("appliance image in QEMU", { timeout: 45 * 60_000 }, () => {
  // Serial console logs and the cloud's state and log, which stay until the next run.
  const workDir = path.join(path.dirname(OUT_DIR), "run");
  fs.rmSync(workDir, { recursive: true, force: true });
  fs.mkdirSync(workDir, { recursive: true });
  const cloudState = path.join(workDir, "cloud");
  const cloudLog = path.join(workDir, "cloud.log");
  const processes: NamespaceProcess[] = [];
  let ns: LabNamespaces;
  let addr: { cloud: string; nataWan: string; nataLan: string };
  let macGn: string;
  let image: DiskImage;
  let vm: ApplianceVm;
  let adapter: Identity;
  let gn: { fqdn: string; virtualIP: string };
  let cn2: { fqdn: string; virtualIP: string };
  let gnRecords: string;
  let firstIdentity: { identity: Buffer; keyHash: string };

  const spawn = (namespace: string, argv: string[], logName?: string, env?: Record<string, string>): NamespaceProcess => {
    const child = new NamespaceProcess(namespace, argv, {
      cwd: REPO_ROOT,
      ...(logName === undefined ? {} : { logFile: path.join(workDir, logName) }),
      ...(env === undefined ? {} : { env }),
    });
    processes.push(child);
    return child;
  };
  const inNamespace = (namespace: string, argv: string[], timeoutMs = 30_000) => run(["ip", "netns", "exec", namespace, ...argv], timeoutMs);
  const admin = (...args: string[]) => runChecked(["node", CYPHONIC, "admin", "--state", cloudState, ...args]);

  /** The cloud's log lines (pino JSON) with the message `msg`. */
  const cloudEvents = (msg: string): CloudEvent[] =>
    fs
      .readFileSync(cloudLog, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as CloudEvent)
      .filter((event) => event.msg === msg);

  const adapterRedemptions = (): CloudEvent[] => cloudEvents("token redeemed").filter((event) => event.node === adapter.nodeId);

  const readIdentity = async (): Promise<{ identity: Buffer; keyHash: string }> => {
    const identity = await readRootFile(image, "/var/lib/cyphonic/identity.json");
    const key = await readRootFile(image, "/var/lib/cyphonic/private.key");
    assert.ok(identity, "identity.json exists in /var/lib/cyphonic");
    assert.ok(key, "private.key exists in /var/lib/cyphonic");
    return { identity, keyHash: sha256(key) };
  };

  const pingCn2FromGn = async (): Promise<string> => {
    // The first packets can wait for the route (up to 5 s), so a few tries are allowed.
    let last = "";
    for (let attempt = 0; attempt < 6; attempt += 1) {
      const r = await inNamespace(ns.gn, ["ping", "-c", "3", "-i", "0.5", "-W", "5", cn2.fqdn], 60_000);
      last = r.stdout + r.stderr;
      if (/3 received/.test(last)) return last;
      await delay(5000);
    }
    return last;
  };

  before(async () => {
    const started = Date.now();
    image = readDiskImage(OUT_DIR);
    const values = parseKeyValues(await labScript(["up", PREFIX]));
    const value = (key: string): string => {
      const found = values.get(key);
      if (found === undefined) throw new Error(`lab.sh up printed no ${key}`);
      return found;
    };
    ns = { cloud: value("NS_CLOUD"), cn2: value("NS_CN2"), nata: value("NS_NATA"), adapter: value("NS_ADAPTER"), gn: value("NS_GN") };
    addr = { cloud: value("ADDR_CLOUD"), nataWan: value("ADDR_NATA_WAN"), nataLan: value("ADDR_NATA_LAN") };
    macGn = value("MAC_GN");

    // The lab's adapter namespace becomes the switch box around the VM: its
    // WAN veth and the WAN tap share a bridge, and the LAN tap joins the
    // bridge to gn and gn2. The namespace keeps no address of its own.
    const wan = value("IF_ADAPTER_WAN");
    const lan = value("IF_ADAPTER_LAN");
    const ip = (...args: string[]) => runChecked(["ip", "-n", ns.adapter, ...args]);
    await ip("addr", "flush", "dev", wan);
    await ip("link", "add", WAN_BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0");
    await ip("link", "set", WAN_BRIDGE, "up");
    await ip("link", "set", wan, "master", WAN_BRIDGE);
    await ip("tuntap", "add", "dev", WAN_TAP, "mode", "tap");
    await ip("link", "set", WAN_TAP, "master", WAN_BRIDGE, "up");
    await ip("tuntap", "add", "dev", LAN_TAP, "mode", "tap");
    await ip("link", "set", LAN_TAP, "master", lan, "up");

    // nata plays the home router: DHCP for the appliance's WAN, then NAPT.
    const udhcpdConf = path.join(workDir, "udhcpd.conf");
    fs.writeFileSync(
      udhcpdConf,
      [
        `start ${WAN_POOL.start}`,
        `end ${WAN_POOL.end}`,
        "interface lan0",
        `lease_file ${path.join(workDir, "udhcpd.leases")}`,
        `pidfile ${path.join(workDir, "udhcpd.pid")}`,
        "option subnet 255.255.255.0",
        `option router ${addr.nataLan}`,
        `option dns ${addr.nataLan}`,
        "option lease 600",
        "",
      ].join("\n"),
    );
    spawn(ns.nata, ["busybox", "udhcpd", "-f", udhcpdConf], "udhcpd.log");

    const cloud = spawn(ns.cloud, ["node", CYPHONIC, "cloud", "--state", cloudState, "--advertise", addr.cloud, "--control", path.join(workDir, "cloud.sock")], "cloud.log", {
      CYPHONIC_LOG_LEVEL: "info",
    });
    await cloud.waitForLine(/"cloud started"/, 30_000);

    const asEndpoint = `${addr.cloud}:${AS_PORT}`;
    const [, cn2Fqdn, cn2Ip] = (await admin("node", "add", "cn2")).trim().split("\t");
    cn2 = { fqdn: cn2Fqdn!, virtualIP: cn2Ip! };
    const cn2Token = path.join(workDir, "cn2.token");
    await admin("token", "create", "cn2", "--as-endpoint", asEndpoint, "--out", cn2Token);
    const cn2Node = spawn(
      ns.cn2,
      ["node", CYPHONIC, "node", "--state", path.join(workDir, "cn2"), "--control", path.join(workDir, "cn2.sock"), "--token-file", cn2Token],
      "cn2.log",
      { CYPHONIC_LOG_LEVEL: "info" },
    );
    await cn2Node.waitForLine(/"registered with NMS"/, 30_000);

    const [adapterId, adapterFqdn, adapterIp] = (await admin("node", "add", "adapter1", "--kind", "adapter")).trim().split("\t");
    adapter = { nodeId: Number(adapterId), fqdn: adapterFqdn!, virtualIP: adapterIp! };
    const [, gnFqdn, gnIp] = (await admin("general", "add", "gn1", "--adapter", "adapter1", "--mac", macGn)).trim().split("\t");
    gn = { fqdn: gnFqdn!, virtualIP: gnIp! };
    const token = path.join(workDir, "adapter1.token");
    await admin("token", "create", "adapter1", "--as-endpoint", asEndpoint, "--out", token);

    // The operator's token file goes onto the boot partition unchanged, as a
    // user copies it from a PC. The WAN and LAN keep their defaults (DHCP, eth0, eth1).
    await writeBootFile(image, token, "cyphonic-token.txt");
    vm = new ApplianceVm({ image, namespace: ns.adapter, wanTap: WAN_TAP, lanTap: LAN_TAP, wanMac: WAN_MAC, lanMac: LAN_MAC, workDir });
    gnRecords = fs.mkdtempSync(path.join(workDir, "gn-"));
    console.log(`lab, cloud, cn2 and token ready after ${((Date.now() - started) / 1000).toFixed(0)} s`);
  });

  after(async () => {
    const started = Date.now();
    await vm?.kill();
    for (const child of processes) await child.kill("SIGTERM").catch(() => undefined);
    if (ns) fs.rmSync(`/etc/netns/${ns.gn}`, { recursive: true, force: true });
    await labScript(["down", PREFIX]);
    console.log(`lab removed after ${((Date.now() - started) / 1000).toFixed(0)} s; serial console logs and the cloud's log: ${workDir}`);
  });

  test("first boot redeems the token with the AS", async () => {
    const started = Date.now();
    vm.boot();
    await waitFor("the AS to redeem adapter1's token", () => adapterRedemptions().length > 0, FIRST_BOOT_TIMEOUT_MS, () => vm.tail());
    console.log(`first boot: token redeemed after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const redeemed = adapterRedemptions();
    assert.equal(redeemed.length, 1);
    assert.equal(redeemed[0]!.fqdn, adapter.fqdn);
    const listed = (await admin("node", "list")).split("\n").find((line) => line.split("\t")[1] === adapter.fqdn);
    assert.ok(listed, `node list has ${adapter.fqdn}`);
    assert.equal(listed.split("\t")[4], "provisioned");
    // Provisioning ran from the boot partition before the network came up,
    // and the firewall loaded before the adapter started.
    await vm.waitForConsole(/Finished cyphonic-firstboot\.service/, 60_000);
    await vm.waitForConsole(/Finished cyphonic-firewall\.service/, 60_000);
    assert.ok(TARGET_HOSTNAME, "image/config sets TARGET_HOSTNAME");
    assert.match(vm.console(), new RegExp(`Hostname set to <${TARGET_HOSTNAME}>`));
  });

  test("adapter service starts and registers with the NMS behind the NAPT", async () => {
    await vm.waitForConsole(/Started cyphonic-adapter\.service/, BOOT_TIMEOUT_MS);
    await waitFor("adapter1 to register with the NMS", () => cloudEvents("node registered").some((e) => e.node === adapter.nodeId), BOOT_TIMEOUT_MS, () => vm.tail());
    const registration = cloudEvents("node registered").find((e) => e.node === adapter.nodeId)!;
    // nata translates the source, and the appliance reports the WAN address it got from nata's DHCP server.
    assert.match(registration.endpoint ?? "", new RegExp(`^${addr.nataWan.replace(/\./g, "\\.")}:\\d+$`));
    assert.equal(registration.napt, true);
    assert.ok(
      (registration.local ?? []).some((endpoint) => new RegExp(`^192\\.168\\.1\\.10\\d:${TUNNEL_PORT}$`).test(endpoint)),
      `local endpoints ${JSON.stringify(registration.local)} contain a DHCP address of nata's pool`,
    );
    await vm.waitForConsole(/"adapter ready"/, 60_000);
  });

  test("general node gets its lease and pings cn2 by name", async () => {
    spawn(ns.gn, ["udhcpc", "-f", "-i", "eth0", "-s", UDHCPC_SCRIPT, "-t", "20", "-T", "3"], "udhcpc.log", { DHCP_RECORD_DIR: gnRecords });
    const bound = path.join(gnRecords, "bound.env");
    await waitFor("gn's DHCP lease", () => fs.existsSync(bound), 3 * 60_000, () => vm.tail());
    const lease = readEnvFile(bound);
    assert.equal(lease.ip, gn.virtualIP);
    assert.equal(lease.router, adapter.virtualIP);
    assert.equal(lease.dns, adapter.virtualIP);
    assert.equal(lease.domain, DOMAIN);
    fs.mkdirSync(`/etc/netns/${ns.gn}`, { recursive: true });
    fs.writeFileSync(`/etc/netns/${ns.gn}/resolv.conf`, `nameserver ${lease.dns}\noptions timeout:5 attempts:2\n`);

    const output = await pingCn2FromGn();
    assert.match(output, /3 received/, output);
    assert.match(output, new RegExp(`PING ${cn2.fqdn.replace(/\./g, "\\.")} \\(${cn2.virtualIP.replace(/\./g, "\\.")}\\)`));
  });

  test("general node sends a TCP stream through the adapter", async () => {
    // A stream makes the worker read packets in batches and send them with
    // UDP segmentation offload, which only a burst exercises: on arm64 that
    // checks the sendmsg structures that koffi builds.
    const receiver = spawn(ns.cn2, ["node", "--import", "tsx", path.join(LAB_FIXTURES, "stream-receiver.ts"), cn2.virtualIP, String(STREAM_PORT)], "stream-receiver.log");
    await receiver.waitForLine(/listening/, 10_000);
    const sender = spawn(ns.gn, ["node", "--import", "tsx", path.join(LAB_FIXTURES, "stream-sender.ts"), cn2.virtualIP, String(STREAM_PORT), String(STREAM_BYTES), "1"], "stream-sender.log");
    const sent = JSON.parse(await sender.waitForLine(/sha256/, 120_000)) as { bytes: number; sha256: string };
    const received = JSON.parse(await receiver.waitForLine(/sha256/, 30_000)) as { bytes: number; sha256: string };
    assert.equal(sent.bytes, STREAM_BYTES);
    assert.equal(received.bytes, STREAM_BYTES);
    assert.equal(received.sha256, sent.sha256);
    assert.doesNotMatch(vm.console(), /cannot segment UDP sends|UDP send failed/);
  });

  test("power off leaves the identity and removes the token file", async () => {
    await vm.powerOff(POWER_OFF_TIMEOUT_MS);
    assert.match(vm.console(), /Stopped cyphonic-adapter\.service/, "the adapter stopped before the power-off");
    assert.match(vm.console(), /reboot: Power down/);
    const bootFiles = await listBootFiles(image);
    assert.ok(!bootFiles.includes("cyphonic-token.txt"), `boot partition still has the token file: ${bootFiles.join(", ")}`);
    assert.ok(bootFiles.includes("cyphonic-token.txt.example"), `boot partition keeps the example: ${bootFiles.join(", ")}`);
    assert.equal(await rootFileExists(image, "/var/lib/cyphonic/token.txt"), false, "the adapter deleted token.txt after redeeming it");
    assert.equal(await rootFileExists(image, "/var/lib/cyphonic/appliance-provision.json"), true);
    firstIdentity = await readIdentity();
    const identity = JSON.parse(firstIdentity.identity.toString("utf8")) as Identity;
    assert.equal(identity.nodeId, adapter.nodeId);
    assert.equal(identity.fqdn, adapter.fqdn);
    assert.equal(identity.virtualIP, adapter.virtualIP);
  });

  test("second boot keeps the identity and does not redeem again", async () => {
    const registrationsBefore = cloudEvents("node registered").filter((e) => e.node === adapter.nodeId).length;
    const started = Date.now();
    vm.boot();
    await vm.waitForConsole(/Started cyphonic-adapter\.service/, BOOT_TIMEOUT_MS);
    await waitFor(
      "adapter1 to register again",
      () => cloudEvents("node registered").filter((e) => e.node === adapter.nodeId).length > registrationsBefore,
      BOOT_TIMEOUT_MS,
      () => vm.tail(),
    );
    console.log(`second boot: registered after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    assert.equal(adapterRedemptions().length, 1, "the AS redeemed adapter1's token once in all");
    // systemd logs a unit skipped by its condition at info level, and the journal goes to the console.
    assert.match(vm.console(), /cyphonic-firstboot\.service - .* skipped, unmet condition check ConditionPathExists=\/boot\/firmware\/cyphonic-token\.txt/);
    assert.doesNotMatch(vm.console(), /(Starting|Finished) cyphonic-firstboot\.service/, "provisioning does not run without a token file");

    // gn's udhcpc keeps its lease, and the adapter must forward for it again.
    const output = await pingCn2FromGn();
    assert.match(output, /3 received/, output);

    await vm.powerOff(POWER_OFF_TIMEOUT_MS);
    const second = await readIdentity();
    assert.equal(second.identity.toString("utf8"), firstIdentity.identity.toString("utf8"));
    assert.equal(second.keyHash, firstIdentity.keyHash, "private.key is unchanged");
  });
});
