// The systems under test and where each runs. All six carry traffic from
// the client to an iperf3 server on cn2 over the same underlay: the
// lab's "adapter" host behind the NAPT router nata, the internet bridge,
// and cn2. Cases (a) to (d) run their client on the adapter host itself, and
// case (e) runs it on gn, the unmodified device on the adapter's LAN.
//
// A plain `cyphonic node` (d) and the adapter (e) cannot run side by side
// in one namespace, because both route the overlay prefix into their own
// TUN device, so they take turns on the adapter host.
import path from "node:path";
import type { SystemId } from "./config.js";
import { BenchLab, delay } from "./lab.js";
import { BenchOverlay, RunningDaemon, writeUdhcpcScript } from "./overlay.js";
import { TunnelEnds, startNebula, startWireguard } from "./tunnels.js";


export interface SystemUnderTest {
  id: SystemId;
  /** Case letter and name, as the report prints it. */
  label: string;
  /** Lab host that runs the iperf3 and ping clients. */
  client: string;
  /** Address of the iperf3 server and the ping target, on cn2. */
  server: string;
  /** Makes the system ready to carry traffic, which for most is a warm-up ping. */
  activate(): Promise<void>;
  /** PIDs of the tunnel processes at both ends, empty for the path without a tunnel. */
  tunnelPids(): number[];
  /** The tunnel's interface on cn2, null without a tunnel. Every tunnel packet crosses it once. */
  serverInterface: string | null;
}

/** Names of the CYPHONIC nodes the benchmark creates. */
const PEER = "bpeer";
const NODE = "bnode";
const ADAPTER = "badapter";
const GENERAL_NODE = "bgn";
/** The peer daemon's TUN device on cn2, the node's default name. */
const PEER_TUN = "cyph0";
/** Longer than a full run, so gn never renews its lease while the adapter takes its turn off. */
const LEASE_SECONDS = "7200";
const WARMUP_TIMEOUT_MS = 30_000;

/**
 * Runs the plain node or the adapter on the adapter host, restarting the
 * other one's daemon when the turn changes. Each keeps its state directory,
 * so a restart reuses its identity, as after a reboot.
 */
class HostATurns {
  private running: { which: "node" | "adapter"; daemon: RunningDaemon } | null = null;
  private readonly tokens = new Map<string, string>();

  constructor(
    private readonly overlay: BenchOverlay,
    private readonly lan: string,
  ) {}

  addToken(name: string, file: string): void {
    this.tokens.set(name, file);
  }

  get daemon(): RunningDaemon | null {
    return this.running?.daemon ?? null;
  }

  async use(which: "node" | "adapter"): Promise<RunningDaemon> {
    if (this.running?.which === which && this.running.daemon.process.running) return this.running.daemon;
    if (this.running) await this.overlay.stopDaemon(this.running.daemon);
    this.running = null;
    const name = which === "node" ? NODE : ADAPTER;
    const token = this.tokens.get(name);
    this.tokens.delete(name);
    const daemon = await this.overlay.startDaemon({ host: "adapter", name, ...(which === "adapter" ? { lan: this.lan } : {}) }, token, which === "adapter" ? ["--lease-seconds", LEASE_SECONDS] : []);
    if (which === "adapter") await this.overlay.waitForLogLines(daemon, /"general node added"/, 1, WARMUP_TIMEOUT_MS);
    this.running = { which, daemon };
    return daemon;
  }

  async stop(): Promise<void> {
    if (this.running) await this.overlay.stopDaemon(this.running.daemon);
    this.running = null;
  }
}

export interface Systems {
  list: SystemUnderTest[];
  overlay: BenchOverlay;
  /** Stops the CYPHONIC daemons on the adapter host and gn's DHCP client, which the memory phase needs free. */
  releaseAdapterHost(): Promise<void>;
}

/** Starts every system and returns them in the order of the cases (a) to (e). */
export async function startSystems(lab: BenchLab, dir: string, log: (line: string) => void): Promise<Systems> {
  log("starting wireguard-go");
  const wireguard = await startWireguard(lab, dir);
  log("starting nebula (AES-256-GCM and ChaCha20-Poly1305)");
  const nebulaAes = await startNebula(lab, dir, "aes", 2, 4242);
  const nebulaChacha = await startNebula(lab, dir, "chachapoly", 3, 4243);

  log("starting the CYPHONIC cloud, peer node, node and adapter");
  const overlay = new BenchOverlay(lab, path.join(dir, "cyphonic"));
  await overlay.startCloud();
  const peerAddress = (await overlay.createNode(PEER, "node")).virtualIP;
  const peer = await overlay.startDaemon({ host: "cn2", name: PEER }, await overlay.issueToken(PEER));
  const turns = new HostATurns(overlay, lab.info.adapterLanInterface);
  await overlay.createNode(NODE, "node");
  turns.addToken(NODE, await overlay.issueToken(NODE));
  await overlay.createNode(ADAPTER, "adapter");
  await overlay.addGeneralNode(ADAPTER, GENERAL_NODE, lab.info.macGn);
  turns.addToken(ADAPTER, await overlay.issueToken(ADAPTER));
  // The first start of each daemon redeems its token. The adapter then serves gn its lease.
  await turns.use("node");
  await turns.use("adapter");
  const dhcp = lab.spawn("gn", ["udhcpc", "-f", "-i", "eth0", "-t", "20", "-T", "1", "-s", writeUdhcpcScript(dir)], { logFile: path.join(dir, "udhcpc.log") });
  await waitForAddress(lab, "gn", "eth0");

  const tunnelSystem = (id: SystemId, label: string, ends: TunnelEnds): SystemUnderTest => ({
    id,
    label,
    client: "adapter",
    server: ends.serverAddress,
    activate: () => warmUp(lab, "adapter", ends.serverAddress),
    tunnelPids: () => ends.processes.map((p) => p.pid),
    serverInterface: ends.serverInterface,
  });
  const list: SystemUnderTest[] = [
    { id: "plain", label: "(a) no tunnel", client: "adapter", server: lab.info.cn2, activate: () => warmUp(lab, "adapter", lab.info.cn2), tunnelPids: () => [], serverInterface: null },
    tunnelSystem("wireguard-go", "(b) wireguard-go", wireguard),
    tunnelSystem("nebula-aes", "(c) nebula, AES-256-GCM (its default)", nebulaAes),
    tunnelSystem("nebula-chacha", "(c) nebula, ChaCha20-Poly1305", nebulaChacha),
    {
      id: "cyphonic-node",
      label: "(d) CYPHONIC node to node",
      client: "adapter",
      server: peerAddress,
      activate: async () => {
        await turns.use("node");
        await warmUp(lab, "adapter", peerAddress);
      },
      tunnelPids: () => [turns.daemon?.process.pid ?? 0, peer.process.pid].filter((pid) => pid > 0),
      serverInterface: PEER_TUN,
    },
    {
      id: "cyphonic-adapter",
      label: "(e) CYPHONIC gn through the adapter",
      client: "gn",
      server: peerAddress,
      activate: async () => {
        await turns.use("adapter");
        await warmUp(lab, "gn", peerAddress);
      },
      tunnelPids: () => [turns.daemon?.process.pid ?? 0, peer.process.pid].filter((pid) => pid > 0),
      serverInterface: PEER_TUN,
    },
  ];
  return {
    list,
    overlay,
    releaseAdapterHost: async () => {
      await dhcp.kill("SIGTERM");
      await turns.stop();
    },
  };
}

/** Waits until pings through a path get replies. The first packets of a CYPHONIC path wait for route selection and a handshake. */
async function warmUp(lab: BenchLab, host: string, address: string): Promise<void> {
  const deadline = Date.now() + WARMUP_TIMEOUT_MS;
  for (;;) {
    const r = await lab.exec(host, ["ping", "-c", "1", "-W", "1", address], 5_000);
    if (r.code === 0) break;
    if (Date.now() > deadline) throw new Error(`no ping reply from ${address} in ${lab.ns(host)} within ${WARMUP_TIMEOUT_MS} ms`);
  }
  // A few more, so a session that was just built carries data before the measurement.
  await lab.exec(host, ["ping", "-c", "3", "-i", "0.1", "-W", "1", address], 5_000);
}

async function waitForAddress(lab: BenchLab, host: string, iface: string): Promise<void> {
  const deadline = Date.now() + WARMUP_TIMEOUT_MS;
  for (;;) {
    const r = await lab.exec(host, ["ip", "-4", "-o", "addr", "show", "dev", iface]);
    if (r.stdout.includes("inet ")) return;
    if (Date.now() > deadline) throw new Error(`${iface} in ${lab.ns(host)} got no DHCP lease within ${WARMUP_TIMEOUT_MS} ms`);
    await delay(250);
  }
}
