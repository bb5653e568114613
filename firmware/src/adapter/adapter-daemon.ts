// The adapter: a node daemon that also speaks for the unmodified devices
// ("general nodes") on its LAN NIC. Each general node gets its virtual IP by
// DHCP, its DNS answers from the adapter, and a member of its own in the
// overlay, so peers see the device's own virtual IP and name.
import { EventEmitter } from "node:events";
import path from "node:path";
import { TUNNEL_MTU_BYTES } from "../protocol/constants.js";
import { ipv4ToNumber } from "../protocol/endpoint.js";
import { NodeConfig, NodeDaemon } from "../node/daemon.js";
import { Member } from "../node/member.js";
import { NodeStatus } from "../node/status.js";
import { DhcpLeaseChange, DhcpServer } from "./dhcp/index.js";
import { LanSetup } from "./lan/lan-setup.js";
import { GeneralNode, GeneralNodeRegistry } from "./registry.js";

export interface AdapterConfig extends NodeConfig {
  /** The NIC towards the general nodes. */
  lanInterface: string;
  /** DHCP lease time; renewals come at half of it. */
  leaseSeconds: number;
}

export class AdapterDaemon extends NodeDaemon {
  private lan: LanSetup | null = null;
  private dhcp: DhcpServer | null = null;
  private registry: GeneralNodeRegistry | null = null;
  /** General-node members by node id. */
  private readonly general = new Map<number, { node: GeneralNode; member: Member }>();
  /** "lease" after every DHCP lease change and its firewall update, for the status LEDs. */
  readonly events = new EventEmitter<{ lease: [DhcpLeaseChange] }>();

  constructor(private readonly adapterConfig: AdapterConfig) {
    super(adapterConfig);
  }

  get hasIdentity(): boolean {
    return this.identity !== null;
  }

  /** Whether the adapter's own member is registered with the NMS. */
  get registeredWithNms(): boolean {
    return this.primary?.nms.status().registered ?? false;
  }

  /** General nodes of the current list that hold an unexpired DHCP lease. */
  get leasedGeneralNodes(): number {
    const macs = new Set([...this.general.values()].map(({ node }) => node.mac.toLowerCase()));
    return this.dhcp?.leases().filter((lease) => macs.has(lease.mac.toLowerCase())).length ?? 0;
  }

  override async start(): Promise<void> {
    await super.start();
    const id = this.identity!;
    const cfg = this.adapterConfig;
    this.lan = await LanSetup.apply({
      lanInterface: cfg.lanInterface,
      tunInterface: cfg.tunName,
      adapterVirtualIP: id.virtualIP,
      overlayCidr: `${networkOf(id.virtualIP, id.prefixLength)}/${id.prefixLength}`,
      tunnelMtuBytes: TUNNEL_MTU_BYTES,
    });
    this.registry = new GeneralNodeRegistry(cfg.stateDir, this.primary!.channel, this.requests, id.as, [cfg.tunName], (nodes) => void this.applyGeneralNodes(nodes), this.log);
    this.dhcp = await DhcpServer.start({
      interfaceName: cfg.lanInterface,
      serverAddress: id.virtualIP,
      subnetMask: maskOf(id.prefixLength),
      router: id.virtualIP,
      dnsServers: [id.virtualIP],
      domainName: id.overlayDomain,
      mtuBytes: TUNNEL_MTU_BYTES,
      leaseSeconds: cfg.leaseSeconds,
      reservations: () => [...this.general.values()].map(({ node }) => ({ mac: node.mac, address: node.virtualIP, hostname: node.fqdn.split(".")[0] })),
      leaseFile: path.join(cfg.stateDir, "leases.json"),
      onLease: (change) => void this.onLease(change),
    });
    await this.registry.start();
    // Leases that survived a restart: their (MAC, IP) pairs pass the firewall again.
    for (const lease of this.dhcp.leases()) await this.lan.allowLease(lease.mac, lease.address);
    this.log.info({ lan: cfg.lanInterface, generalNodes: this.general.size }, "adapter ready");
  }

  override async stop(): Promise<void> {
    this.registry?.stop();
    await this.dhcp?.close();
    await this.lan?.remove();
    await super.stop();
  }

  /** Builds the node's status with the DHCP server's counters and the firewall's spoofing drops. */
  protected override async report(): Promise<NodeStatus> {
    const status = this.status();
    Object.assign(status.counters, this.dhcp?.counters.snapshot() ?? {});
    if (this.lan) {
      const drops = await this.lan.readDropCounters();
      status.counters["lan.spoofed_packets"] = drops.spoofedForwardPackets + drops.spoofedInputPackets;
      status.counters["lan.spoofed_forward_packets"] = drops.spoofedForwardPackets;
      status.counters["lan.spoofed_input_packets"] = drops.spoofedInputPackets;
    }
    return status;
  }

  /** Brings members, routes and firewall entries in line with the registry's list. */
  private async applyGeneralNodes(nodes: GeneralNode[]): Promise<void> {
    const wanted = new Map(nodes.map((n) => [n.nodeId, n]));
    for (const [nodeId, entry] of this.general) {
      const next = wanted.get(nodeId);
      if (next && next.virtualIP === entry.node.virtualIP && next.keys.publicKey.equals(entry.node.keys.publicKey)) {
        entry.node = next;
        continue;
      }
      this.removeMember(entry.member);
      this.general.delete(nodeId);
      await this.lan?.removeGeneralNode(entry.node.virtualIP);
      await this.lan?.revokeLease(entry.node.mac, entry.node.virtualIP);
      this.log.info({ node: nodeId, fqdn: entry.node.fqdn }, "general node removed");
    }
    for (const node of nodes) {
      if (this.general.has(node.nodeId)) continue;
      const member = this.addMember({ keys: node.keys, nodeId: node.nodeId, fqdn: node.fqdn, virtualIP: node.virtualIP, nms: this.identity!.nms });
      this.general.set(node.nodeId, { node, member });
      await this.lan?.addGeneralNode(node.virtualIP);
      this.log.info({ node: node.nodeId, fqdn: node.fqdn, virtualIP: node.virtualIP, mac: node.mac }, "general node added");
    }
  }

  private async onLease(change: DhcpLeaseChange): Promise<void> {
    try {
      if (change.event === "bound" || change.event === "renewed") await this.lan?.allowLease(change.mac, change.address);
      else await this.lan?.revokeLease(change.mac, change.address);
    } catch (err) {
      this.log.error({ err, mac: change.mac, virtualIP: change.address, event: change.event }, "firewall update for a lease failed");
    }
    this.events.emit("lease", change);
  }
}

function maskOf(prefixLength: number): string {
  const n = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");
}

function networkOf(address: string, prefixLength: number): string {
  const n = (ipv4ToNumber(address) & ((0xffffffff << (32 - prefixLength)) >>> 0)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join(".");
}
