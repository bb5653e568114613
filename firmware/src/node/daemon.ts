// The node daemon: one UDP socket carries signaling with the cloud and the
// tunnels to peers; a TUN device carries the virtual-IP traffic; a resolver
// answers peer FQDNs once their tunnel is up; a control socket reports status.
// The daemon hosts members (identities); a plain node has exactly one.
import { KeyPair } from "../protocol/crypto.js";
import { TUNNEL_MTU_BYTES } from "../protocol/constants.js";
import { Endpoint, formatEndpoint, ipv4ToNumber } from "../protocol/endpoint.js";
import fs from "node:fs";
import path from "node:path";
import { AnyEngine, AnyPeer, PeerRole } from "../dataplane/engine-carrier.js";
import { DataplaneSupervisor } from "../dataplane/supervisor.js";
import { EndpointMux } from "../transport/endpoint-mux.js";
import { HandshakeClock } from "../transport/handshake-clock.js";
import { underlaySignature } from "../transport/reachability.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { ControlServer } from "../util/control-socket.js";
import { Counters } from "../util/counters.js";
import { Logger, logger } from "../util/log.js";
import { DnsQueryContext, DnsServer, OverlayLookupResult } from "./dns/index.js";
import { NodeIdentity, loadIdentity, loadOrCreateKey } from "./identity.js";
import { Member } from "./member.js";
import { completeProvisioning, redeemToken, redemptionStepDone, retireLeftoverTokenFile } from "./provision.js";
import { RequestTracker } from "./requests.js";
import { NodeStatus, buildStatus } from "./status.js";
import { readTokenFile } from "./token-file.js";
import { configureTunInterface, createTunInterface } from "./tun.js";
import { NodePeerTag } from "./tunnels.js";

export interface NodeConfig {
  stateDir: string;
  tokenFile: string | null;
  port: number;
  tunName: string;
  controlSocket: string;
  dnsListen: Endpoint[] | "virtual-ip";
  dnsUpstream: Endpoint | null;
}

/** How often the host's addresses are compared with the last seen, so a move is noticed within this time. */
const UNDERLAY_POLL_MS = 200;
/** Longer than the resolver's wait for a tunnel, so a slow first handshake still gets its answer. */
const DNS_QUERY_TIMEOUT_MS = 9_000;

export class NodeDaemon {
  readonly counters = new Counters();
  protected readonly log: Logger;
  protected readonly requests = new RequestTracker();
  protected readonly mux: EndpointMux;
  protected readonly keys: KeyPair;
  /** Members by virtual IP (as a number); packets from the local stack pick theirs by source address. */
  protected readonly members = new Map<number, Member>();
  protected identity: NodeIdentity | null = null;
  protected primary: Member | null = null;
  /** The TUN descriptor stays here, so the interface and its routes outlive a dataplane worker. */
  private tunFd: number | null = null;
  protected dataplane: DataplaneSupervisor | null = null;
  private dns: DnsServer | null = null;
  private underlayTimer: NodeJS.Timeout | null = null;
  private underlay = "";
  private control: ControlServer | null = null;

  constructor(protected readonly config: NodeConfig) {
    this.log = logger("node");
    this.mux = new EndpointMux(this.log);
    this.mux.clock = new HandshakeClock(path.join(config.stateDir, "handshake-clock"));
    this.keys = loadOrCreateKey(config.stateDir);
  }

  get virtualIP(): string {
    return this.identity?.virtualIP ?? "";
  }

  async start(): Promise<void> {
    // The interface exists before the worker starts, so the worker inherits
    // its descriptor; it gets its address once the identity is known.
    const tun = createTunInterface(this.config.tunName);
    this.tunFd = tun.fd;
    const dataplane = new DataplaneSupervisor({
      port: this.config.port,
      tun,
      roleOf: (engine, peer) => this.roleOf(engine, peer),
      onDatagram: (datagram, source) => this.mux.receive(datagram, source),
      onPacket: (packet) => this.onTunPacket(packet),
      log: this.log,
    });
    this.dataplane = dataplane;
    this.mux.carrierFactory = (engine) => dataplane.carrierFor(engine);
    await dataplane.start();
    this.mux.adopt(dataplane);
    this.mux.clock.start();
    const saved = loadIdentity(this.config.stateDir);
    if (saved && this.config.tokenFile) retireLeftoverTokenFile(this.config.tokenFile, saved, this.log);
    this.identity = saved ?? (await this.provision());
    const id = this.identity;
    this.log.info({ node: id.nodeId, fqdn: id.fqdn, virtualIP: id.virtualIP, port: this.mux.port }, "node starting");
    await configureTunInterface(tun.name, TUNNEL_MTU_BYTES, `${id.virtualIP}/${id.prefixLength}`);

    this.primary = this.addMember({ keys: this.keys, nodeId: id.nodeId, fqdn: id.fqdn, virtualIP: id.virtualIP, nms: id.nms });

    const dnsListen = this.config.dnsListen === "virtual-ip" ? [{ address: id.virtualIP, port: 53 }] : this.config.dnsListen;
    this.dns = await DnsServer.start({
      listen: dnsListen,
      overlayDomain: id.overlayDomain,
      lookup: (fqdn, ctx) => this.lookup(fqdn, ctx),
      upstream: this.config.dnsUpstream,
      // An overlay answer waits for route selection and the tunnel handshake.
      queryTimeoutMs: DNS_QUERY_TIMEOUT_MS,
    });
    this.control = await ControlServer.start(this.config.controlSocket, () => this.report(), this.log);
    this.underlay = underlaySignature([this.config.tunName]);
    this.underlayTimer = setInterval(() => this.checkUnderlay(), UNDERLAY_POLL_MS);
    this.underlayTimer.unref();
    this.log.info({ dns: dnsListen.map(formatEndpoint), control: this.config.controlSocket }, "node ready");
  }

  /** Notices a new address (a new DHCP lease, another network, another family) within one poll. */
  private checkUnderlay(): void {
    const now = underlaySignature([this.config.tunName]);
    if (now === this.underlay) return;
    this.log.info({ from: this.underlay || "none", to: now || "none" }, "underlay addresses changed");
    this.underlay = now;
    this.counters.add("underlay.changes");
    for (const member of this.members.values()) member.underlayChanged();
  }

  async stop(): Promise<void> {
    if (this.underlayTimer) clearInterval(this.underlayTimer);
    for (const m of this.members.values()) m.stop();
    this.requests.cancelAll(new Error("node stopping"));
    await this.dns?.close();
    await this.control?.close();
    this.mux.close();
    this.dataplane?.close();
    if (this.tunFd !== null) fs.closeSync(this.tunFd);
    this.tunFd = null;
    this.mux.clock.stop();
  }

  status(): NodeStatus {
    const status = buildStatus(this.identity, this.mux.port, [...this.members.values()], [this.counters, this.mux.counters], this.dns?.counters ?? null);
    for (const [k, v] of Object.entries(this.dataplane?.countersSnapshot() ?? {})) status.counters[k] = (status.counters[k] ?? 0) + v;
    status.dataplane = this.dataplane?.status() ?? null;
    return status;
  }

  /** Tells the dataplane worker which packets a peer's sessions carry. */
  private roleOf(engine: AnyEngine, peer: AnyPeer): PeerRole {
    const tag = peer.tag as NodePeerTag;
    if (tag.kind === "service") return { tunnel: null, relay: tag.service === "trs" };
    for (const member of this.members.values()) {
      if (member.channel.engine === engine) return { tunnel: { local: member.virtualIPNumber, remote: tag.virtualIPNumber }, relay: false };
    }
    return { tunnel: null, relay: false };
  }

  /** Builds the status for the control socket; subclasses add what else they run. */
  protected async report(): Promise<NodeStatus> {
    return this.status();
  }

  protected addMember(identity: Member["identity"]): Member {
    const member = new Member(identity, this.mux, this.requests, (packet) => this.dataplane?.writeTun(packet), this.counters, this.log, [this.config.tunName]);
    this.members.set(member.virtualIPNumber, member);
    member.start();
    return member;
  }

  protected removeMember(member: Member): void {
    member.stop();
    this.members.delete(member.virtualIPNumber);
  }

  /** Resolves for the member whose virtual IP sent the query, else for this node itself. */
  protected lookup(fqdn: string, ctx: DnsQueryContext): Promise<OverlayLookupResult> {
    const member = this.members.get(safeIPv4Number(ctx.source.address)) ?? this.primary;
    if (!member) return Promise.resolve({ kind: "servfail", reason: "node not started" });
    return member.resolver.lookup(fqdn);
  }

  private async provision(): Promise<NodeIdentity> {
    if (!this.config.tokenFile) {
      throw new Error(`node is not provisioned: no identity in ${this.config.stateDir}; pass --token-file with the token the operator issued`);
    }
    const token = readTokenFile(this.config.tokenFile);
    // A short-lived channel with this node's key: only the AS is spoken to before the identity exists.
    const channel = new SignalChannel<NodePeerTag>(
      this.keys,
      { acceptInitiation: () => ({ reject: "unknown_peer" }), onSignal: (_p, s) => this.requests.complete(s) },
      this.log,
      this.mux,
    );
    try {
      // The constructor wrote the key, so a crash from here on retries with the same key.
      redemptionStepDone("key-saved");
      const welcome = await redeemToken(channel, this.requests, token, this.log);
      redemptionStepDone("as-answered");
      return completeProvisioning(this.config.stateDir, this.config.tokenFile, token, welcome, this.log);
    } finally {
      channel.close();
    }
  }

  /** Sends a packet from the local stack: the source address picks the member, the destination the tunnel. */
  private onTunPacket(packet: Buffer): void {
    if (packet.length < 20 || packet[0]! >> 4 !== 4) {
      this.counters.add("tun.drop.not_ipv4");
      return;
    }
    const member = this.members.get(packet.readUInt32BE(12));
    if (!member) {
      this.counters.add("drop.unknown_source");
      return;
    }
    member.sendPacket(packet, packet.readUInt32BE(16));
  }
}

function safeIPv4Number(address: string): number {
  try {
    return ipv4ToNumber(address);
  } catch {
    return -1;
  }
}
