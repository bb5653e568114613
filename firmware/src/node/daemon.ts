// The node daemon: one UDP socket carries signaling with the cloud and the
// tunnels to peers; a TUN device carries the virtual-IP traffic; a resolver
// answers peer FQDNs once their tunnel is up; a control socket reports status.
import { TUNNEL_MTU_BYTES } from "../protocol/constants.js";
import { Endpoint, bytesToIPv4, formatEndpoint, ipv4ToNumber } from "../protocol/endpoint.js";
import { readIPv4Header } from "../protocol/ipv4.js";
import { RouteInfo, Signal, SignalType } from "../protocol/signaling.js";
import { PeerPath, Source, describePath } from "../transport/path.js";
import { Peer } from "../transport/peer.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { Counters } from "../util/counters.js";
import { Logger, RateLimitedLog, logger } from "../util/log.js";
import { ControlServer } from "../util/control-socket.js";
import { DnsServer } from "./dns/index.js";
import { NodeIdentity, loadIdentity, loadOrCreateKey } from "./identity.js";
import { NmsLink } from "./nms-link.js";
import { completeProvisioning, redeemToken } from "./provision.js";
import { RequestTracker } from "./requests.js";
import { NodeStatus, buildStatus } from "./status.js";
import { readTokenFile } from "./token-file.js";
import { TunDevice } from "./tun.js";
import { NodePeerTag, TunnelTable, TunnelTag } from "./tunnels.js";
import { OverlayResolver } from "./resolver.js";

export interface NodeConfig {
  stateDir: string;
  tokenFile: string | null;
  port: number;
  tunName: string;
  controlSocket: string;
  dnsListen: Endpoint[] | "virtual-ip";
  dnsUpstream: Endpoint | null;
}

/** Route requests for one unknown destination are sent at most this often. */
const ROUTE_ON_DEMAND_INTERVAL_MS = 2_000;
/** A node behind NAPT keeps its tunnels' mappings open at this interval. */
const NAPT_TUNNEL_KEEPALIVE_MS = 15_000;

export class NodeDaemon {
  readonly counters = new Counters();
  readonly tunnels = new TunnelTable();
  private readonly log: Logger;
  private readonly dropLog: RateLimitedLog;
  private readonly requests = new RequestTracker();
  private readonly channel: SignalChannel<NodePeerTag>;
  private readonly routeAsked = new Map<number, number>();
  private identity: NodeIdentity | null = null;
  private nms: NmsLink | null = null;
  private trsPeer: Peer<NodePeerTag> | null = null;
  private tun: TunDevice | null = null;
  private dns: DnsServer | null = null;
  private control: ControlServer | null = null;
  private virtualIPNumber = 0;
  readonly resolver: OverlayResolver;

  constructor(private readonly config: NodeConfig) {
    this.log = logger("node");
    this.dropLog = new RateLimitedLog(this.log);
    const keys = loadOrCreateKey(config.stateDir);
    this.channel = new SignalChannel<NodePeerTag>(
      keys,
      {
        acceptInitiation: (key) => {
          const peer = this.channel.engine.peer(key);
          return peer?.tag.kind === "tunnel" ? { peer } : { reject: "unknown_peer" };
        },
        onSignal: (peer, signal, source) => this.onSignal(peer, signal, source),
        onPacket: (peer, packet) => this.onTunnelPacket(peer, packet),
        sendRelay: (datagram, path) => this.sendRelay(datagram, path),
        onSessionEstablished: (peer) => {
          if (peer.tag.kind === "tunnel") this.resolver.tunnelReady(peer);
        },
        onPathChanged: (peer, from, to) => {
          if (peer.tag.kind === "tunnel" && from) this.log.info({ peer: peer.tag.fqdn, from: describePath(from), to: describePath(to) }, "peer endpoint changed");
        },
      },
      this.log,
    );
    this.resolver = new OverlayResolver(this, this.log);
  }

  get virtualIP(): string {
    return this.identity?.virtualIP ?? "";
  }

  get fqdn(): string {
    return this.identity?.fqdn ?? "";
  }

  async start(): Promise<void> {
    await this.channel.listen(this.config.port);
    this.identity = loadIdentity(this.config.stateDir) ?? (await this.provision());
    this.virtualIPNumber = ipv4ToNumber(this.identity.virtualIP);
    this.log.info({ node: this.identity.nodeId, fqdn: this.identity.fqdn, virtualIP: this.identity.virtualIP, port: this.channel.port }, "node starting");

    this.tun = await TunDevice.open({
      name: this.config.tunName,
      mtuBytes: TUNNEL_MTU_BYTES,
      addressCidr: `${this.identity.virtualIP}/${this.identity.prefixLength}`,
      counters: this.counters,
    });
    this.tun.onPacket((packet) => this.onTunPacket(packet));

    this.nms = new NmsLink(this.channel, this.requests, this.identity.nms, () => this.channel.port, [this.config.tunName], this.log);
    this.nms.start();

    const dnsListen = this.config.dnsListen === "virtual-ip" ? [{ address: this.identity.virtualIP, port: 53 }] : this.config.dnsListen;
    this.dns = await DnsServer.start({
      listen: dnsListen,
      overlayDomain: this.identity.overlayDomain,
      lookup: (fqdn) => this.resolver.lookup(fqdn),
      upstream: this.config.dnsUpstream,
    });
    this.control = await ControlServer.start(this.config.controlSocket, () => this.status(), this.log);
    this.log.info({ dns: dnsListen.map(formatEndpoint), control: this.config.controlSocket }, "node ready");
  }

  async stop(): Promise<void> {
    this.nms?.stop();
    this.requests.cancelAll(new Error("node stopping"));
    await this.dns?.close();
    await this.control?.close();
    this.tun?.close();
    this.channel.close();
  }

  status(): NodeStatus {
    return buildStatus(this.identity, this.nms?.status() ?? null, this.tunnels.all(), this.channel, this.counters, this.dns?.counters ?? null);
  }

  /** Asks the NMS for a route to target and sets up the tunnel it describes. */
  async connect(target: { fqdn: string } | { virtualIP: string }): Promise<Peer<NodePeerTag>> {
    if (!this.nms) throw new Error("node not started");
    const route = await this.nms.requestRoute(target);
    return this.applyRoute(route);
  }

  private async provision(): Promise<NodeIdentity> {
    if (!this.config.tokenFile) {
      throw new Error(`node is not provisioned: no identity in ${this.config.stateDir}; pass --token-file with the token the operator issued`);
    }
    const token = readTokenFile(this.config.tokenFile);
    const welcome = await redeemToken(this.channel, this.requests, token, this.log);
    return completeProvisioning(this.config.stateDir, this.config.tokenFile, token, welcome, this.log);
  }

  private applyRoute(route: RouteInfo): Peer<NodePeerTag> {
    const relayKey = route.relay?.staticKey.toString("hex") ?? "";
    if (route.relay) this.ensureRelay(route.relay.staticKey, route.relay.endpoint);
    const existing = this.channel.engine.peer(route.peer.staticKey);
    const { peer, initiate } = this.tunnels.apply(route, existing, relayKey);
    this.channel.engine.addPeer(peer);
    // Behind NAPT, keep the tunnel's mapping open so the peer can always send.
    peer.persistentKeepaliveMs = this.nms?.napted ? NAPT_TUNNEL_KEEPALIVE_MS : 0;
    if (initiate && !peer.current && !peer.handshake) this.channel.engine.initiate(peer);
    this.log.info(
      { peer: route.peer.fqdn, virtualIP: route.peer.virtualIP, route: route.routeId, path: describePath(peer.path ?? { kind: "relay", routeId: route.routeId, relayKey }), reason: route.reason, initiate },
      "route applied",
    );
    return peer;
  }

  private ensureRelay(key: Buffer, endpoint: Endpoint): Peer<NodePeerTag> {
    if (!this.trsPeer) {
      this.trsPeer = this.channel.engine.addPeer(new Peer<NodePeerTag>(key, { kind: "direct", endpoint }, { kind: "service", service: "trs" }, true));
      this.trsPeer.persistentKeepaliveMs = NAPT_TUNNEL_KEEPALIVE_MS;
    }
    return this.trsPeer;
  }

  private sendRelay(datagram: Buffer, path: Extract<PeerPath, { kind: "relay" }>): void {
    if (!this.trsPeer || this.trsPeer.keyHex !== path.relayKey) {
      this.counters.add("drop.no_relay");
      return;
    }
    this.channel.signal(this.trsPeer, { type: SignalType.RelayData, routeId: path.routeId, datagram });
  }

  private onSignal(peer: Peer<NodePeerTag>, signal: Signal, _source: Source): void {
    if (peer.tag.kind !== "service") {
      this.counters.add("drop.signal_from_tunnel");
      return;
    }
    if (this.requests.complete(signal)) return;
    if (peer.tag.service === "nms" && this.nms?.handle(signal)) return;
    if (peer.tag.service === "nms" && signal.type === SignalType.RouteInstruction) {
      this.channel.signal(peer, { type: SignalType.RouteInstructionAck, instructionId: signal.instructionId });
      this.applyRoute(signal.route);
      return;
    }
    if (peer.tag.service === "trs" && signal.type === SignalType.RelayData) {
      this.channel.engine.receive(signal.datagram, { kind: "relay", routeId: signal.routeId, relayKey: peer.keyHex });
      return;
    }
    this.counters.add("drop.unexpected_signal");
  }

  /** A packet from the local stack, to be sent through the tunnel to its destination. */
  private onTunPacket(packet: Buffer): void {
    if (packet.length < 20 || packet[0]! >> 4 !== 4) {
      this.counters.add("tun.drop.not_ipv4");
      return;
    }
    const destination = packet.readUInt32BE(16);
    const peer = this.tunnels.get(destination);
    if (peer) {
      this.channel.engine.send(peer, packet);
      return;
    }
    this.counters.add("drop.no_route");
    this.routeOnDemand(destination);
  }

  /** Traffic to a virtual IP with no tunnel asks the NMS for a route, at most once per interval. */
  private routeOnDemand(destination: number): void {
    const now = Date.now();
    if (now - (this.routeAsked.get(destination) ?? 0) < ROUTE_ON_DEMAND_INTERVAL_MS) return;
    if (this.routeAsked.size > 4096) this.routeAsked.clear();
    this.routeAsked.set(destination, now);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(destination >>> 0);
    const virtualIP = bytesToIPv4(b);
    this.connect({ virtualIP }).catch((err: Error) => {
      this.dropLog.warn(`route:${virtualIP}`, { virtualIP, err: err.message }, "no route to virtual IP");
    });
  }

  /** A packet that came out of a tunnel: deliver it only if it is from the peer's own virtual IP to ours. */
  private onTunnelPacket(peer: Peer<NodePeerTag>, packet: Buffer): void {
    if (peer.tag.kind !== "tunnel") {
      this.counters.add("drop.packet_from_service");
      return;
    }
    const header = readIPv4Header(packet);
    if (!header) {
      this.counters.add("drop.bad_ip_packet");
      return;
    }
    if (packet.readUInt32BE(12) !== (peer.tag as TunnelTag).virtualIPNumber >>> 0) {
      this.counters.add("drop.spoofed_source");
      this.dropLog.warn(`spoof:${peer.tag.fqdn}`, { peer: peer.tag.fqdn, source: header.source }, "dropped tunnel packet with a source other than the peer's virtual IP");
      return;
    }
    if (packet.readUInt32BE(16) !== this.virtualIPNumber >>> 0) {
      this.counters.add("drop.not_for_us");
      return;
    }
    this.tun?.write(packet);
  }
}
