// Starts the cloud and two nodes in a lab the way an operator would, with the
// built program (dist/cyphonic.cjs): create the nodes, issue tokens, start
// each node with its token file, and wait until both registered. An adapter
// starts as on the appliance: with a configuration file and with the
// appliance firewall (overlay/etc/cyphonic/appliance.nft) loaded in its
// namespace.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { rewriteFirewall } from "../../firmware/src/appliance/provisioning/root-files.js";
import { Lab, LabHost, LabProcess } from "./harness.js";

export const CYPHONIC = path.resolve("dist/cyphonic.cjs");
export const APPLIANCE_RULESET = path.resolve("overlay/etc/cyphonic/appliance.nft");
export const DOMAIN = "cyphonic.internal";
/** The fixture waits for the daemons' info lines, whatever level the test runner itself logs at. */
const DAEMON_ENV = { CYPHONIC_LOG_LEVEL: "info" };

export interface NodeStatusJson {
  node: { id: number; fqdn: string; virtualIP: string } | null;
  nms: { registered: boolean; observed: string | null; napt: boolean | null; registrations: number } | null;
  tunnels: { fqdn: string; virtualIP: string; path: string; endpoint: string | null; session: boolean; bytesSent: number; bytesReceived: number; reason: string }[];
  counters: Record<string, number>;
}

export interface OverlayNode {
  host: LabHost;
  /** The adapter's LAN NIC; absent for a plain node. */
  lan?: string;
  name: string;
  fqdn: string;
  virtualIP: string;
  stateDir: string;
  control: string;
  /** An adapter's LED class directory: empty unless a test puts fake LEDs there before the start. */
  ledRoot?: string;
  process: LabProcess;
}

/** Returns the `define NAME = VALUE` variables of an nftables file, with quotes removed. */
export function nftDefines(text: string): Map<string, string> {
  const defines = new Map<string, string>();
  for (const match of text.matchAll(/^define\s+(\w+)\s*=\s*(.+?)\s*$/gm)) defines.set(match[1]!, match[2]!.replace(/^"(.*)"$/, "$1"));
  return defines;
}

export class Overlay {
  cloud!: LabProcess;
  readonly nodes = new Map<string, OverlayNode>();
  readonly dir: string;

  constructor(readonly lab: Lab) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.prefix}-overlay-`));
  }

  get cloudState(): string {
    return path.join(this.dir, "cloud");
  }

  get cloudControl(): string {
    return path.join(this.dir, "cloud.sock");
  }

  async startCloud(): Promise<void> {
    const advertise = ["--advertise", this.lab.addr.cloud, "--advertise", this.lab.addr.cloud6];
    this.cloud = this.lab.spawn("cloud", ["node", CYPHONIC, "cloud", "--state", this.cloudState, ...advertise, "--control", this.cloudControl], {
      logFile: path.join(this.dir, "cloud.log"),
      env: DAEMON_ENV,
    });
    await this.cloud.waitForLine(/"cloud started"/, 10_000);
  }

  async admin(...args: string[]): Promise<string> {
    const r = await this.lab.exec("cloud", ["node", CYPHONIC, "admin", "--state", this.cloudState, ...args], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`cyphonic admin ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  /** Creates the node in the cloud, issues its token and starts its daemon in the lab host. */
  async addNode(host: LabHost, name: string, lan?: string): Promise<OverlayNode> {
    await this.admin("node", "add", name, ...(lan ? ["--kind", "adapter"] : []));
    return this.startNode(host, name, lan);
  }

  /** Issues a token for a node created beforehand (an adapter with general nodes, say) and starts it. */
  async startNode(host: LabHost, name: string, lan?: string): Promise<OverlayNode> {
    const fields = (await this.admin("node", "list")).split("\n").map((l) => l.split("\t")).find((f) => f[1]?.startsWith(`${name}.`));
    const [, fqdn, virtualIP] = fields ?? [];
    if (!fqdn || !virtualIP) throw new Error(`node ${name} not found in the cloud`);
    const tokenFile = path.join(this.dir, `${name}.token`);
    await this.admin("token", "create", name, "--as-endpoint", `${this.lab.addr.cloud}:7400,[${this.lab.addr.cloud6}]:7400`, "--out", tokenFile);
    const node: OverlayNode = {
      host,
      lan,
      name,
      fqdn,
      virtualIP,
      stateDir: path.join(this.dir, name),
      control: path.join(this.dir, `${name}.sock`),
      ...(lan ? { ledRoot: this.ledRoot(name) } : {}),
      process: undefined as unknown as LabProcess,
    };
    if (lan) await this.loadApplianceFirewall(host, lan);
    node.process = this.spawnNode(node, tokenFile);
    this.nodes.set(name, node);
    await node.process.waitForLine(/"registered with NMS"/, 15_000);
    return node;
  }

  /** Registers a general node (an unmodified device) behind an adapter; returns its FQDN and virtual IP. */
  async addGeneralNode(adapter: string, name: string, mac: string): Promise<{ fqdn: string; virtualIP: string }> {
    const line = (await this.admin("general", "add", name, "--adapter", adapter, "--mac", mac)).trim();
    const [, fqdn, virtualIP] = line.split("\t");
    return { fqdn: fqdn!, virtualIP: virtualIP! };
  }

  spawnNode(node: OverlayNode, tokenFile?: string): LabProcess {
    const args = node.lan
      ? ["node", CYPHONIC, "adapter", "--config", this.writeAdapterConfig(node.name, { lanInterface: node.lan })]
      : ["node", CYPHONIC, "node", "--state", node.stateDir, "--control", node.control];
    // The token file comes as a flag, which adds tokenFile to the file's keys.
    if (tokenFile) args.push("--token-file", tokenFile);
    return this.lab.spawn(node.host, args, { logFile: path.join(this.dir, `${node.name}.log`), env: DAEMON_ENV });
  }

  /** Returns the LED class directory that the adapter `name` is given. */
  ledRoot(name: string): string {
    return path.join(this.dir, `${name}-leds`);
  }

  /**
   * Writes the configuration file of the adapter `name` and returns its path.
   * tunName and port come from the appliance firewall's TUN and TUNNEL_PORT,
   * as on the appliance; `overrides` replaces any key.
   */
  writeAdapterConfig(name: string, overrides: Record<string, unknown>): string {
    const defines = nftDefines(fs.readFileSync(APPLIANCE_RULESET, "utf8"));
    const config = {
      stateDir: path.join(this.dir, name),
      controlSocket: path.join(this.dir, `${name}.sock`),
      tunName: defines.get("TUN"),
      port: Number(defines.get("TUNNEL_PORT")),
      // Short, so renewals and expiries happen within a test.
      leaseSeconds: 30,
      ledRoot: this.ledRoot(name),
      ...overrides,
    };
    const file = path.join(this.dir, `${name}.adapter.json`);
    fs.writeFileSync(file, JSON.stringify(config, null, 2) + "\n");
    return file;
  }

  /**
   * Loads the appliance firewall into the namespace of `host`, as
   * cyphonic-firewall.service does before the adapter starts, with WAN and
   * LAN set to the lab's interface names the way first-boot provisioning
   * sets them.
   */
  async loadApplianceFirewall(host: LabHost, lan: string): Promise<void> {
    const changes = { wanInterface: this.lab.iface.adapterWan, lanInterface: lan };
    const text = rewriteFirewall(fs.readFileSync(APPLIANCE_RULESET, "utf8"), changes, APPLIANCE_RULESET);
    const file = path.join(this.dir, `appliance-${host}.nft`);
    fs.writeFileSync(file, text);
    const r = await this.lab.exec(host, ["nft", "-f", file]);
    if (r.code !== 0) throw new Error(`nft -f ${file} in ${host} failed (${r.code}): ${r.stderr}`);
  }

  node(name: string): OverlayNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name} in this overlay`);
    return n;
  }

  async status(name: string): Promise<NodeStatusJson> {
    const r = await this.lab.exec(this.node(name).host, ["node", CYPHONIC, "status", "--json", "--control", this.node(name).control]);
    if (r.code !== 0) throw new Error(`cyphonic status failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as NodeStatusJson;
  }

  async cloudStatus(): Promise<{ services: Record<string, Record<string, number>> }> {
    const r = await this.lab.exec("cloud", ["node", "-e", `
      const net = require("net"); const c = net.createConnection(${JSON.stringify(this.cloudControl)});
      c.on("connect", () => c.write(JSON.stringify({ command: "status" }) + "\\n"));
      let b = ""; c.on("data", (d) => { b += d; if (b.includes("\\n")) { process.stdout.write(b); c.end(); } });`]);
    if (r.code !== 0) throw new Error(`cloud status failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** Makes `name` resolve through the node's own resolver inside its namespace (ip netns exec bind-mounts this file). */
  useNodeResolver(name: string): void {
    const node = this.node(name);
    const dir = `/etc/netns/${this.lab.ns[node.host]}`;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "resolv.conf"), `nameserver ${node.virtualIP}\noptions timeout:5 attempts:2\n`);
  }

  cleanup(): void {
    for (const node of this.nodes.values()) fs.rmSync(`/etc/netns/${this.lab.ns[node.host]}`, { recursive: true, force: true });
  }
}

/** Brings up a lab with the cloud and one node per host (named after it), as most lab suites start. */
export async function startOverlay<H extends LabHost[]>(
  hosts: [...H],
): Promise<{ lab: Lab; overlay: Overlay; nodes: { [K in keyof H]: OverlayNode } }> {
  const lab = await Lab.up();
  const overlay = new Overlay(lab);
  await overlay.startCloud();
  const nodes: OverlayNode[] = [];
  for (const host of hosts) nodes.push(await overlay.addNode(host, host));
  return { lab, overlay, nodes: nodes as { [K in keyof H]: OverlayNode } };
}

/** Removes what startOverlay made; safe after a failed start. */
export async function stopOverlay(lab: Lab | undefined, overlay: Overlay | undefined): Promise<void> {
  overlay?.cleanup();
  await lab?.down();
}
