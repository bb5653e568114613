// The adapter's kernel-side LAN setup with real namespaces: proxy ARP,
// forwarding into a TUN device, the (MAC, IP) lease check, MSS clamping,
// ICMP fragmentation-needed at the tunnel MTU, and crash-safe removal.
// A reflector on the TUN device replaces the tunnel. Needs root.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import type { NamespaceProcess } from "./lab-process.js";
import type { DecodedPacket } from "./packet.js";
import { readTcpMssOption } from "./fixtures/ipv4-replies.js";
import {
  ADAPTER_VIRTUAL_IP,
  ADAPTER_WAN_IP,
  GN2_MAC,
  GN_MAC,
  GN_VIRTUAL_IP,
  LAN_INTERFACE,
  LanLab,
  LanSetupControl,
  OVERLAY_CIDR,
  REFLECTOR_SCRIPT,
  REPO_ROOT,
  TUN_INTERFACE,
  TUNNEL_MTU_BYTES,
  WAN_HOST_IP,
} from "./fixtures/lan-lab.js";

const UDP_PROBE = path.join(REPO_ROOT, "test/lab/udp-probe.ts");
const OVERLAY_PEER_IP = "100.64.0.2";
const UNLEASED_IP = "100.64.0.9";
/** MSS that general nodes announce on a 1500-byte Ethernet link, and that the reflector's SYN-ACKs announce. */
const ETHERNET_MSS_BYTES = 1460;
const CLAMPED_MSS_BYTES = TUNNEL_MTU_BYTES - 40;
const ETHERNET_HEADER_BYTES = 14;
const PROCESS_START_TIMEOUT_MS = 20_000;
const NEGATIVE_WAIT_MS = 1_500;

const SYSCTL_PATHS = ["ip_forward", `conf/${LAN_INTERFACE}/proxy_arp`, `conf/${LAN_INTERFACE}/rp_filter`, `conf/${LAN_INTERFACE}/arp_ignore`];

const SETUP_OPTIONS = {
  lanInterface: LAN_INTERFACE,
  tunInterface: TUN_INTERFACE,
  adapterVirtualIP: ADAPTER_VIRTUAL_IP,
  overlayCidr: OVERLAY_CIDR,
  tunnelMtuBytes: TUNNEL_MTU_BYTES,
};

interface DropCounters {
  spoofedForwardPackets: number;
  spoofedInputPackets: number;
}

function hasCommand(name: string): boolean {
  return (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir !== "" && existsSync(path.join(dir, name)));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Returns the MSS option of a captured Ethernet frame that carries an IPv4 TCP segment. */
function frameMss(packet: DecodedPacket): number | null {
  const ipHeaderBytes = ((packet.frame[ETHERNET_HEADER_BYTES] ?? 0) & 0x0f) * 4;
  return readTcpMssOption(packet.frame, ETHERNET_HEADER_BYTES + ipHeaderBytes);
}

function tcpFlags(packet: DecodedPacket): number {
  const ipHeaderBytes = ((packet.frame[ETHERNET_HEADER_BYTES] ?? 0) & 0x0f) * 4;
  return packet.frame[ETHERNET_HEADER_BYTES + ipHeaderBytes + 13] ?? 0;
}

describe("adapter LAN setup", { timeout: 240_000 }, () => {
  let lab: LanLab;
  let control: LanSetupControl;
  let reflector: NamespaceProcess;
  let dnsListener: NamespaceProcess;
  let dhcpListener: NamespaceProcess;
  let originalSysctls: string[];
  let adapterLanMac: string;

  async function ping(host: "gn" | "gn2", args: string[]): Promise<{ code: number; output: string }> {
    const result = await lab.exec(host, ["ping", "-n", ...args], 15_000);
    return { code: result.code, output: result.stdout + result.stderr };
  }

  async function sendUdp(host: "gn" | "gn2", destination: string, payload: string): Promise<void> {
    await lab.execOrThrow(host, [process.execPath, "--import", "tsx", UDP_PROBE, "send", "0", payload, destination]);
  }

  async function dropCounters(): Promise<DropCounters> {
    return (await control.call("readDropCounters")) as DropCounters;
  }

  async function adapterNeighbor(virtualIP: string): Promise<string> {
    return lab.execOrThrow("adapter", ["ip", "neigh", "show", virtualIP, "dev", LAN_INTERFACE]);
  }

  before(async () => {
    lab = LanLab.up();
    // Start values that differ from what the setup writes, so remove() must restore them.
    await lab.writeAdapterSysctl("ip_forward", "0");
    await lab.writeAdapterSysctl(`conf/${LAN_INTERFACE}/rp_filter`, "2");
    originalSysctls = await Promise.all(SYSCTL_PATHS.map((sysctl) => lab.readAdapterSysctl(sysctl)));
    adapterLanMac = (await lab.execOrThrow("adapter", ["cat", `/sys/class/net/${LAN_INTERFACE}/address`])).trim();

    reflector = lab.spawn("adapter", [
      process.execPath,
      "--import",
      "tsx",
      REFLECTOR_SCRIPT,
      TUN_INTERFACE,
      `${ADAPTER_VIRTUAL_IP}/16`,
      String(TUNNEL_MTU_BYTES),
      String(ETHERNET_MSS_BYTES),
    ]);
    dnsListener = lab.spawn("adapter", [process.execPath, "--import", "tsx", UDP_PROBE, "listen", "53", "1000"]);
    dhcpListener = lab.spawn("adapter", [process.execPath, "--import", "tsx", UDP_PROBE, "listen", "67", "1000"]);
    await reflector.waitForLine(/"event":"ready"/, PROCESS_START_TIMEOUT_MS);
    await dnsListener.waitForLine(/"event":"listening"/, PROCESS_START_TIMEOUT_MS);
    await dhcpListener.waitForLine(/"event":"listening"/, PROCESS_START_TIMEOUT_MS);

    control = await lab.startControl();
    await control.call("apply", SETUP_OPTIONS);
    await control.call("addGeneralNode", GN_VIRTUAL_IP);
    await control.call("allowLease", GN_MAC, GN_VIRTUAL_IP);
  });

  after(async () => {
    await lab?.down();
  });

  test("apply sets sysctls, address, route and lease", async () => {
    assert.equal(await lab.readAdapterSysctl("ip_forward"), "1");
    assert.equal(await lab.readAdapterSysctl(`conf/${LAN_INTERFACE}/proxy_arp`), "1");
    assert.equal(await lab.readAdapterSysctl(`conf/${LAN_INTERFACE}/rp_filter`), "1");
    assert.equal(await lab.readAdapterSysctl(`conf/${LAN_INTERFACE}/arp_ignore`), "1");
    const addresses = await lab.execOrThrow("adapter", ["ip", "-4", "-o", "address", "show", "dev", LAN_INTERFACE]);
    assert.match(addresses, /inet 100\.64\.0\.3\/32 /);
    const routes = await lab.execOrThrow("adapter", ["ip", "route", "show", "dev", LAN_INTERFACE, "proto", "202"]);
    assert.match(routes, /^100\.64\.0\.7 /m);
    const neighbor = await adapterNeighbor(GN_VIRTUAL_IP);
    assert.match(neighbor, new RegExp(`lladdr ${GN_MAC} .*PERMANENT`));
    const leases = await lab.execOrThrow("adapter", ["nft", "list", "set", "inet", "cyphonic_adapter", "leases"]);
    assert.match(leases, new RegExp(`${GN_MAC} \\. ${GN_VIRTUAL_IP.replaceAll(".", "\\.")}`));
  });

  test("leased node pings an overlay peer", async () => {
    const result = await ping("gn", ["-c", "3", "-i", "0.2", "-W", "2", OVERLAY_PEER_IP]);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /3 received/);
    // Proxy ARP: the general node reaches the overlay peer at the adapter's MAC.
    const neighbor = await lab.execOrThrow("gn", ["ip", "neigh", "show", OVERLAY_PEER_IP, "dev", "eth0"]);
    assert.match(neighbor, new RegExp(`lladdr ${adapterLanMac} `));
  });

  test("leased node reaches adapter ICMP and DNS", async () => {
    const result = await ping("gn", ["-c", "1", "-W", "2", ADAPTER_VIRTUAL_IP]);
    assert.equal(result.code, 0, result.output);
    await sendUdp("gn", `${ADAPTER_VIRTUAL_IP}:53`, "dns-from-gn");
    const line = await dnsListener.waitForLine(/dns-from-gn/, 3_000);
    assert.match(line, /"address":"100\.64\.0\.7"/);
  });

  test("general node cannot reach the underlay", async () => {
    const capture = await lab.capture("wan", "eth0", "icmp");
    const toWanHost = await ping("gn", ["-c", "2", "-i", "0.2", "-W", "1", WAN_HOST_IP]);
    const toAdapterWan = await ping("gn", ["-c", "2", "-i", "0.2", "-W", "1", ADAPTER_WAN_IP]);
    const packets = await capture.stop();
    assert.notEqual(toWanHost.code, 0, toWanHost.output);
    assert.match(toWanHost.output, /0 received/);
    assert.notEqual(toAdapterWan.code, 0, toAdapterWan.output);
    assert.match(toAdapterWan.output, /0 received/);
    assert.deepEqual(
      packets.filter((packet) => packet.ip?.src === GN_VIRTUAL_IP),
      [],
      "a packet from the general node reached the WAN segment",
    );
  });

  test("TCP MSS is clamped both ways", async () => {
    const peer = "100.64.0.20";
    const capture = await lab.capture("gn", "eth0", "tcp[tcpflags] & tcp-syn != 0");
    const script = [
      `const socket = require("node:net").connect(80, ${JSON.stringify(peer)});`,
      `socket.on("connect", () => { console.log("connected"); socket.destroy(); process.exit(0); });`,
      `socket.on("error", (err) => { console.error(err.message); process.exit(1); });`,
      `setTimeout(() => { console.error("connect timed out"); process.exit(2); }, 5000);`,
    ].join("\n");
    const connect = await lab.exec("gn", [process.execPath, "-e", script], 15_000);
    const packets = await capture.stop();
    assert.equal(connect.code, 0, connect.stderr);
    assert.match(connect.stdout, /connected/);

    // LAN to tunnel: the SYN leaves gn with the Ethernet MSS and enters the TUN device clamped.
    const synLine = await reflector.waitForLine(new RegExp(`"event":"syn".*"destination":"${peer.replaceAll(".", "\\.")}"`), 3_000);
    const syn = JSON.parse(synLine) as { mssBytes: number | null };
    assert.equal(syn.mssBytes, CLAMPED_MSS_BYTES);
    const outgoingSyn = packets.find((packet) => packet.ip?.src === GN_VIRTUAL_IP && packet.ip?.dst === peer);
    assert.ok(outgoingSyn, "no SYN from gn in the capture");
    assert.equal(frameMss(outgoingSyn), ETHERNET_MSS_BYTES);

    // Tunnel to LAN: the reflector's SYN-ACK announces 1460 and reaches gn clamped.
    const synAck = packets.find((packet) => packet.ip?.src === peer && (tcpFlags(packet) & 0x12) === 0x12);
    assert.ok(synAck, "no SYN-ACK to gn in the capture");
    assert.equal(frameMss(synAck), CLAMPED_MSS_BYTES);
  });

  test("DF packet over tunnel MTU gets frag-needed", async () => {
    // 1392 bytes of ICMP data + 8 ICMP + 20 IPv4 = 1420, exactly the tunnel MTU.
    const fits = await ping("gn", ["-c", "1", "-M", "do", "-s", String(TUNNEL_MTU_BYTES - 28), "-W", "2", OVERLAY_PEER_IP]);
    assert.equal(fits.code, 0, fits.output);
    const tooBig = await ping("gn", ["-c", "2", "-i", "0.2", "-M", "do", "-s", "1450", "-W", "1", OVERLAY_PEER_IP]);
    assert.notEqual(tooBig.code, 0, tooBig.output);
    assert.match(tooBig.output, /Frag needed and DF set \(mtu = 1420\)|message too long, mtu=1420/);
  });

  test("same IP with another MAC is dropped", async () => {
    const before = await dropCounters();
    // The replies would go to gn's pinned MAC anyway, so the capture on the
    // TUN device shows whether gn2's requests were forwarded at all.
    const tunCapture = await lab.capture("adapter", TUN_INTERFACE, "icmp");
    const pinged = await ping("gn2", ["-c", "2", "-i", "0.2", "-W", "1", OVERLAY_PEER_IP]);
    const tunPackets = await tunCapture.stop();
    assert.notEqual(pinged.code, 0, pinged.output);
    assert.match(pinged.output, /0 received/);
    assert.deepEqual(
      tunPackets.filter((packet) => packet.ip?.src === GN_VIRTUAL_IP),
      [],
      "an echo request from gn2 was forwarded into the TUN device",
    );

    await sendUdp("gn2", `${ADAPTER_VIRTUAL_IP}:53`, "dns-from-gn2");
    await sendUdp("gn2", `${ADAPTER_VIRTUAL_IP}:67`, "dhcp-from-gn2");
    // DHCP passes the input chain before the lease check, DNS does not.
    const dhcpLine = await dhcpListener.waitForLine(/dhcp-from-gn2/, 3_000);
    assert.match(dhcpLine, /"address":"100\.64\.0\.7"/);
    await delay(NEGATIVE_WAIT_MS);
    assert.doesNotMatch(dnsListener.output(), /dns-from-gn2/);

    const afterDrops = await dropCounters();
    assert.ok(
      afterDrops.spoofedForwardPackets >= before.spoofedForwardPackets + 2,
      `forward drops went from ${before.spoofedForwardPackets} to ${afterDrops.spoofedForwardPackets}`,
    );
    assert.ok(
      afterDrops.spoofedInputPackets >= before.spoofedInputPackets + 1,
      `input drops went from ${before.spoofedInputPackets} to ${afterDrops.spoofedInputPackets}`,
    );

    // The permanent neighbor entry keeps replies going to the leased MAC.
    assert.match(await adapterNeighbor(GN_VIRTUAL_IP), new RegExp(`lladdr ${GN_MAC} .*PERMANENT`));
    const leased = await ping("gn", ["-c", "2", "-i", "0.2", "-W", "2", OVERLAY_PEER_IP]);
    assert.equal(leased.code, 0, leased.output);
    assert.match(leased.output, /2 received/);
  });

  test("unrouted address gets no proxy ARP", async () => {
    lab.configureGeneralNode("gn2", GN2_MAC, UNLEASED_IP);
    const before = await dropCounters();
    const pinged = await ping("gn2", ["-c", "2", "-i", "0.2", "-W", "1", OVERLAY_PEER_IP]);
    assert.notEqual(pinged.code, 0, pinged.output);
    assert.match(pinged.output, /0 received/);
    // Strict rp_filter rejects the ARP request's sender address, so no proxy ARP reply arrives.
    const neighbor = await lab.execOrThrow("gn2", ["ip", "neigh", "show", OVERLAY_PEER_IP, "dev", "eth0"]);
    assert.doesNotMatch(neighbor, /lladdr/);
    const afterDrops = await dropCounters();
    assert.equal(afterDrops.spoofedForwardPackets, before.spoofedForwardPackets);
  });

  test("DHCP from 0.0.0.0 reaches the adapter", { skip: !hasCommand("udhcpc") && "udhcpc (busybox) is not installed" }, async () => {
    lab.configureGeneralNode("gn2", GN2_MAC, "");
    // -n: exit when no lease arrives, -q: exit after a lease, -s /bin/true: configure nothing.
    await lab.exec("gn2", ["udhcpc", "-i", "eth0", "-n", "-q", "-t", "2", "-T", "1", "-s", "/bin/true"], 15_000);
    const line = await dhcpListener.waitForLine(/"address":"0\.0\.0\.0","port":68/, 3_000);
    assert.match(line, /"event":"datagram"/);
  });

  test("removeGeneralNode deletes only its route", async () => {
    await control.call("addGeneralNode", UNLEASED_IP);
    const added = await lab.execOrThrow("adapter", ["ip", "route", "show", "dev", LAN_INTERFACE, "proto", "202"]);
    assert.match(added, /^100\.64\.0\.9 /m);
    await control.call("removeGeneralNode", UNLEASED_IP);
    await control.call("removeGeneralNode", UNLEASED_IP);
    const removed = await lab.execOrThrow("adapter", ["ip", "route", "show", "dev", LAN_INTERFACE, "proto", "202"]);
    assert.doesNotMatch(removed, /^100\.64\.0\.9 /m);
    assert.match(removed, /^100\.64\.0\.7 /m);
  });

  test("invalid arguments are rejected", async () => {
    await assert.rejects(control.call("allowLease", "ff:ff:ff:ff:ff:ff", GN_VIRTUAL_IP), /invalid MAC address "ff:ff:ff:ff:ff:ff"/);
    await assert.rejects(control.call("addGeneralNode", ADAPTER_VIRTUAL_IP), /adapter's own virtual IP/);
    await assert.rejects(control.call("addGeneralNode", "10.0.0.1"), /inside 100\.64\.0\.0\/16/);
    await assert.rejects(control.call("apply", { ...SETUP_OPTIONS, lanInterface: "missing0" }), /interface missing0 not found/);
  });

  test("revoked lease gets nothing through", async () => {
    const before = await dropCounters();
    await control.call("revokeLease", GN_MAC, GN_VIRTUAL_IP);
    const leases = await lab.execOrThrow("adapter", ["nft", "list", "set", "inet", "cyphonic_adapter", "leases"]);
    assert.doesNotMatch(leases, new RegExp(GN_MAC));
    assert.doesNotMatch(await adapterNeighbor(GN_VIRTUAL_IP), /PERMANENT/);

    const pinged = await ping("gn", ["-c", "2", "-i", "0.2", "-W", "1", OVERLAY_PEER_IP]);
    assert.notEqual(pinged.code, 0, pinged.output);
    assert.match(pinged.output, /0 received/);
    const afterDrops = await dropCounters();
    assert.ok(
      afterDrops.spoofedForwardPackets >= before.spoofedForwardPackets + 2,
      `forward drops went from ${before.spoofedForwardPackets} to ${afterDrops.spoofedForwardPackets}`,
    );
    // Revoking a pair that holds no lease succeeds.
    await control.call("revokeLease", GN_MAC, GN_VIRTUAL_IP);
  });

  test("nft failure names command and stderr", async () => {
    // Deleting the set makes `nft add element` fail. The table stays, with the saved sysctls in its comment.
    await lab.execOrThrow("adapter", ["nft", "flush", "table", "inet", "cyphonic_adapter"]);
    await lab.execOrThrow("adapter", ["nft", "delete", "set", "inet", "cyphonic_adapter", "leases"]);
    await assert.rejects(
      control.call("allowLease", GN_MAC, GN_VIRTUAL_IP),
      /nft add element inet cyphonic_adapter leases \{ 02:00:5e:10:00:07 \. 100\.64\.0\.7 \} failed with exit status 1: .*No such file or directory/,
    );
    await control.call("apply", SETUP_OPTIONS);
  });

  test("remove after a crash restores everything", async () => {
    await control.call("addGeneralNode", GN_VIRTUAL_IP);
    await control.call("allowLease", GN_MAC, GN_VIRTUAL_IP);
    // SIGKILL leaves the table, sysctls, route and neighbor entry in place, as a crash would.
    await control.kill("SIGKILL");
    assert.equal(await lab.readAdapterSysctl("ip_forward"), "1");

    control = await lab.startControl();
    await control.call("apply", SETUP_OPTIONS);
    // A fresh apply starts with no leases and no general-node routes or neighbor entries.
    const leases = await lab.execOrThrow("adapter", ["nft", "list", "set", "inet", "cyphonic_adapter", "leases"]);
    assert.doesNotMatch(leases, /elements/);
    const routesAfterApply = await lab.execOrThrow("adapter", ["ip", "route", "show", "dev", LAN_INTERFACE, "proto", "202"]);
    assert.equal(routesAfterApply.trim(), "");
    assert.doesNotMatch(await adapterNeighbor(GN_VIRTUAL_IP), /PERMANENT/);

    await control.call("remove");
    const restored = await Promise.all(SYSCTL_PATHS.map((sysctl) => lab.readAdapterSysctl(sysctl)));
    assert.deepEqual(restored, originalSysctls);
    const tables = await lab.execOrThrow("adapter", ["nft", "list", "tables"]);
    assert.doesNotMatch(tables, /cyphonic_adapter/);
    const routes = await lab.execOrThrow("adapter", ["ip", "route", "show", "dev", LAN_INTERFACE]);
    assert.equal(routes.trim(), "");
    const addresses = await lab.execOrThrow("adapter", ["ip", "-4", "-o", "address", "show", "dev", LAN_INTERFACE]);
    assert.equal(addresses.trim(), "");
    const neighbors = await lab.execOrThrow("adapter", ["ip", "neigh", "show", "dev", LAN_INTERFACE, "nud", "permanent"]);
    assert.equal(neighbors.trim(), "");

    await control.call("remove");
    await assert.rejects(control.call("addGeneralNode", GN_VIRTUAL_IP), /LAN setup was removed/);
  });
});
