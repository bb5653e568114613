// One identity in the overlay, hosted by this process: its sessions with the
// cloud, its tunnels and its route requests. A node hosts one member; an
// adapter hosts one for itself and one for each general node behind it, all
// on one UDP socket.
import { KeyPair } from "../protocol/crypto.js";
import { Endpoint, bytesToIPv4, ipv4ToNumber } from "../protocol/endpoint.js";
import { RouteInfo, RouteTarget, ServiceInfo, Signal, SignalType } from "../protocol/signaling.js";
import { tunnelPacketDrop } from "../dataplane/tunnel-filter.js";
import { EndpointMux } from "../transport/endpoint-mux.js";
import { PeerPath, Source, describePath } from "../transport/path.js";
import { pickEndpoint } from "../transport/reachability.js";
import { Peer } from "../transport/peer.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { Counters } from "../util/counters.js";
import { Logger, RateLimitedLog } from "../util/log.js";
import { KeyedRateLimiter } from "../util/rate-limit.js";
import { NmsLink } from "./nms-link.js";
import { RequestTracker } from "./requests.js";
import { OverlayResolver } from "./resolver.js";
import { NodePeerTag, TunnelTable } from "./tunnels.js";

/** Route requests for one unknown destination are sent at most this often. */
const ROUTE_ON_DEMAND_INTERVAL_MS = 2_000;
/** While tunnels are relayed, a keep-alive request goes to the TRS this often, and its response may take this long. */
const RELAY_LIVENESS_INTERVAL_MS = 1_000;
const RELAY_LIVENESS_TIMEOUT_MS = 3_000;
/** Packets held per destination while its route is requested, for how long, and for how many destinations. */
const MAX_PACKETS_HELD = 16;
const HOLD_FOR_ROUTE_MS = 5_000;
const MAX_DESTINATIONS_HELD = 256;
/** How long both ends try the direct path of a punched route before the relay carries it. */
const PUNCH_TIMEOUT_MS = 4_000;
/** While on the relay, the direct path is probed again after this, doubling up to the maximum. */
const PROBE_INTERVAL_MS = 30_000;
const MAX_PROBE_INTERVAL_MS = 300_000;
/** A member behind NAPT keeps its tunnels' mappings open at this interval. */
const NAPT_TUNNEL_KEEPALIVE_MS = 15_000;

export interface MemberIdentity {
  keys: KeyPair;
  nodeId: number;
  fqdn: string;
  virtualIP: string;
  nms: ServiceInfo;
}

export class Member {
  readonly channel: SignalChannel<NodePeerTag>;
  readonly tunnels = new TunnelTable();
  readonly nms: NmsLink;
  readonly resolver: OverlayResolver;
  readonly virtualIPNumber: number;
  private trsPeer: Peer<NodePeerTag> | null = null;
  private readonly routeAsked = new Map<number, number>();
  private readonly dropLog: RateLimitedLog;
  private probeTimer: NodeJS.Timeout | null = null;
  private relayAckMs = 0;
  private relayPingMs = 0;
  private relaySeq = 0;
  /** The relay's endpoints, kept to pick another family after a move. */
  private relayEndpoints: Endpoint[] | null = null;
  /** Packets to destinations whose route request is in flight, by virtual IP as a number. */
  private readonly awaitingRoute = new Map<number, { sinceMs: number; packets: Buffer[] }>();
  /** Relayed peers with a direct candidate: when to probe next, and the interval after that. */
  private readonly probes = new Map<Peer<NodePeerTag>, { nextMs: number; intervalMs: number }>();
  /** Route requests for unknown handshake keys: a few per second overall, one per key per 5 s. */
  private readonly learnLimiter = new KeyedRateLimiter<string>(5, 10);
  private readonly learnPerKey = new KeyedRateLimiter<string>(0.2, 1, 1024);

  constructor(
    readonly identity: MemberIdentity,
    mux: EndpointMux,
    private readonly requests: RequestTracker,
    /** Writes a packet that came out of a tunnel to the local stack (the TUN device). */
    private readonly deliver: (packet: Buffer) => void,
    private readonly counters: Counters,
    private readonly log: Logger,
    /** The overlay's own interfaces, whose addresses are not underlay addresses. */
    private readonly overlayInterfaces: string[],
  ) {
    this.dropLog = new RateLimitedLog(log);
    this.virtualIPNumber = ipv4ToNumber(identity.virtualIP);
    this.channel = new SignalChannel<NodePeerTag>(
      identity.keys,
      {
        acceptInitiation: (key) => {
          const peer = this.channel.engine.peer(key);
          if (peer?.tag.kind === "tunnel") return { peer };
          this.learnPeer(key);
          return { reject: "unknown_peer" };
        },
        onSignal: (peer, signal, source) => this.onSignal(peer, signal, source),
        onPacket: (peer, packet) => this.onTunnelPacket(peer, packet),
        sendRelay: (datagram, path) => this.sendRelay(datagram, path),
        onSessionEstablished: (peer) => {
          if (peer.tag.kind === "tunnel") this.resolver.tunnelReady(peer);
        },
        onProbeFailed: (peer) => this.onProbeFailed(peer),
        onHandshakeFailed: (peer) => this.onHandshakeFailed(peer),
        onPathChanged: (peer, from, to) => {
          if (peer.tag.kind === "tunnel" && from) this.log.info({ peer: peer.tag.fqdn, from: describePath(from), to: describePath(to) }, "peer endpoint changed");
        },
      },
      log,
      mux,
    );
    this.nms = new NmsLink(this.channel, requests, identity.nms, () => mux.port, overlayInterfaces, log);
    this.resolver = new OverlayResolver(
      { fqdn: identity.fqdn, virtualIP: identity.virtualIP, tunnels: this.tunnels, connect: (t) => this.connect(t) },
      log,
    );
  }

  start(): void {
    this.nms.start();
    this.probeTimer = setInterval(() => this.probeRelayedPeers(), 1_000);
    this.probeTimer.unref();
  }

  stop(): void {
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.nms.stop();
    this.channel.close();
  }

  private probeDirect(peer: Peer<NodePeerTag>, timeoutMs: number): void {
    if (peer.tag.kind !== "tunnel" || !peer.tag.directCandidate) return;
    if (this.channel.engine.probe(peer, { kind: "direct", endpoint: peer.tag.directCandidate }, timeoutMs)) {
      this.probes.set(peer, { nextMs: Number.POSITIVE_INFINITY, intervalMs: this.probes.get(peer)?.intervalMs ?? PROBE_INTERVAL_MS });
    }
  }

  /** Carries the traffic over the relay after a failed probe, and schedules the next probe, less often each time. */
  private onProbeFailed(peer: Peer<NodePeerTag>): void {
    if (peer.tag.kind !== "tunnel") return;
    const previous = this.probes.get(peer);
    const intervalMs = previous && previous.nextMs !== Number.POSITIVE_INFINITY ? previous.intervalMs : PROBE_INTERVAL_MS;
    this.probes.set(peer, { nextMs: Date.now() + intervalMs, intervalMs: Math.min(MAX_PROBE_INTERVAL_MS, intervalMs * 2) });
    if (peer.path?.kind === "relay" && !peer.current) {
      this.log.info({ peer: peer.tag.fqdn }, "direct path not open, using the relay");
      this.channel.engine.initiate(peer);
    }
  }

  /** Moves a punched route whose direct path stopped working back to the relay, instead of leaving it dark. */
  private onHandshakeFailed(peer: Peer<NodePeerTag>): void {
    if (peer.tag.kind !== "tunnel" || !peer.tag.punch || peer.path?.kind !== "direct") return;
    peer.path = { kind: "relay", routeId: peer.tag.routeId, relayKey: this.trsPeer?.keyHex ?? "" };
    this.log.info({ peer: peer.tag.fqdn }, "direct path lost, back to the relay");
    this.probes.set(peer, { nextMs: Date.now() + PROBE_INTERVAL_MS, intervalMs: PROBE_INTERVAL_MS * 2 });
    this.channel.engine.initiate(peer);
  }

  /**
   * Sends the TRS a keep-alive request every interval while tunnels use the
   * relay. Without responses the TRS restarted or the path to it broke, so
   * the session with it starts over instead of waiting for the dead-session
   * timer of the data path.
   */
  private checkRelay(now: number): void {
    const trs = this.trsPeer;
    if (!trs?.current) return;
    if (!this.tunnels.all().some((p) => p.path?.kind === "relay")) return;
    if (this.relayAckMs === 0) this.relayAckMs = now;
    if (now - this.relayAckMs > RELAY_LIVENESS_TIMEOUT_MS && !trs.handshake) {
      this.log.warn({ silentMs: now - this.relayAckMs }, "no response from the relay, reconnecting");
      trs.current = null;
      trs.previous = null;
      this.relayAckMs = now;
      this.channel.engine.initiate(trs);
      return;
    }
    if (now - this.relayPingMs >= RELAY_LIVENESS_INTERVAL_MS) {
      this.relayPingMs = now;
      this.channel.signal(trs, { type: SignalType.Keepalive, seq: ++this.relaySeq >>> 0 });
    }
  }

  /** While relayed, keeps trying the direct path, so a route moves off the relay once it can. */
  private probeRelayedPeers(): void {
    const now = Date.now();
    this.checkRelay(now);
    for (const [peer, state] of this.probes) {
      if (peer.tag.kind !== "tunnel" || peer.path?.kind !== "relay" || !peer.current) continue;
      if (now >= state.nextMs) this.probeDirect(peer, PUNCH_TIMEOUT_MS);
    }
  }

  /**
   * Reacts to a change of this host's addresses: registers from the new one,
   * points the relay session at the family the host now has, and sends a
   * keep-alive on every tunnel so that peers learn the new endpoint from an
   * authenticated packet.
   */
  underlayChanged(): void {
    this.nms.underlayChanged();
    if (this.trsPeer && this.relayEndpoints) {
      this.trsPeer.path = { kind: "direct", endpoint: pickEndpoint(this.relayEndpoints, this.overlayInterfaces) };
    }
    for (const peer of this.tunnels.all()) this.channel.engine.sendKeepalive(peer);
  }

  /** Asks the NMS for a route to target and sets up the tunnel it describes. */
  async connect(target: RouteTarget): Promise<Peer<NodePeerTag>> {
    const route = await this.nms.requestRoute(target);
    return this.applyRoute(route);
  }

  /** Sends a packet from the local stack towards destination (a virtual IP as a number). */
  sendPacket(packet: Buffer, destination: number): void {
    const peer = this.tunnels.get(destination);
    if (peer) {
      this.channel.engine.send(peer, packet);
      return;
    }
    this.holdForRoute(packet, destination);
    this.routeOnDemand(destination);
  }

  /** Keeps a few packets for a destination whose route is being requested; they leave once it is applied. */
  private holdForRoute(packet: Buffer, destination: number): void {
    const now = Date.now();
    let held = this.awaitingRoute.get(destination);
    if (!held || now - held.sinceMs > HOLD_FOR_ROUTE_MS) {
      if (held) this.counters.add("drop.no_route", held.packets.length);
      if (!held && this.awaitingRoute.size >= MAX_DESTINATIONS_HELD) {
        this.counters.add("drop.no_route");
        return;
      }
      held = { sinceMs: now, packets: [] };
      this.awaitingRoute.set(destination, held);
    }
    if (held.packets.length >= MAX_PACKETS_HELD) {
      this.counters.add("drop.no_route");
      return;
    }
    held.packets.push(packet);
  }

  private applyRoute(route: RouteInfo): Peer<NodePeerTag> {
    const relayKey = route.relay?.staticKey.toString("hex") ?? "";
    if (route.relay) {
      this.relayEndpoints = route.relay.endpoints;
      this.ensureRelay(route.relay.staticKey, pickEndpoint(route.relay.endpoints, this.overlayInterfaces));
    }
    const existing = this.channel.engine.peer(route.peer.staticKey);
    const before = existing?.path ? describePath(existing.path) : null;
    const { peer, initiate } = this.tunnels.apply(route, existing, relayKey);
    this.channel.engine.addPeer(peer);
    // Behind NAPT, keep the tunnel's mapping open so the peer can always send.
    peer.persistentKeepaliveMs = this.nms.napted ? NAPT_TUNNEL_KEEPALIVE_MS : 0;
    if (peer.tag.kind === "tunnel" && peer.tag.punch && peer.tag.directCandidate && !peer.current) {
      // Both ends probe the direct path now; the relay takes over if neither gets through.
      this.probeDirect(peer, PUNCH_TIMEOUT_MS);
    } else if (initiate && !peer.current && !peer.handshake) {
      this.channel.engine.initiate(peer);
    }
    // After the handshake decision, so held packets wait for it instead of starting one of their own.
    const held = this.awaitingRoute.get(ipv4ToNumber(route.peer.virtualIP));
    if (held) {
      this.awaitingRoute.delete(ipv4ToNumber(route.peer.virtualIP));
      for (const packet of held.packets) this.channel.engine.send(peer, packet);
    }
    const path = peer.path ? describePath(peer.path) : "none";
    // A live session moved to another path: a keep-alive over it at once
    // opens this end's NAPT towards the peer and shows the peer where this end
    // now is, instead of waiting for the next data packet or keep-alive.
    if (existing && before !== path && peer.current) this.channel.engine.sendKeepalive(peer);
    // Repeated instructions for an unchanged route are routine: log only news.
    const level = existing && before === path ? "debug" : "info";
    this.log[level]({ peer: route.peer.fqdn, virtualIP: route.peer.virtualIP, route: route.routeId, path, reason: route.reason, initiate }, "route applied");
    return peer;
  }

  /**
   * Opens the session with the TRS at once, whichever end initiates the
   * tunnel: the TRS forwards only to ends it has a session with, so the
   * awaiting end must be there before the first relayed handshake arrives.
   */
  private ensureRelay(key: Buffer, endpoint: Endpoint): void {
    if (!this.trsPeer) {
      this.trsPeer = this.channel.engine.addPeer(new Peer<NodePeerTag>(key, { kind: "direct", endpoint }, { kind: "service", service: "trs" }, true));
      this.trsPeer.persistentKeepaliveMs = NAPT_TUNNEL_KEEPALIVE_MS;
    }
    if (!this.trsPeer.current && !this.trsPeer.handshake) this.channel.engine.initiate(this.trsPeer);
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
    if (peer.tag.service === "nms" && this.nms.handle(signal)) return;
    if (peer.tag.service === "nms" && signal.type === SignalType.RouteInstruction) {
      this.channel.signal(peer, { type: SignalType.RouteInstructionAck, instructionId: signal.instructionId });
      this.applyRoute(signal.route);
      return;
    }
    if (peer.tag.service === "trs" && signal.type === SignalType.KeepaliveAck) {
      this.relayAckMs = Date.now();
      return;
    }
    if (peer.tag.service === "trs" && signal.type === SignalType.RelayData) {
      this.channel.engine.receive(signal.datagram, { kind: "relay", routeId: signal.routeId, relayKey: peer.keyHex });
      return;
    }
    this.counters.add("drop.unexpected_signal");
  }

  /**
   * Asks the NMS about a key that sent a handshake but has no tunnel here. After a restart this member
   * forgot its tunnels while peers still know it. The NMS decides whether the
   * key may reach this member; if so, its route arrives and the peer's next
   * retransmitted initiation is accepted. Rate-limited, because any sender
   * can make up keys.
   */
  private learnPeer(key: Buffer): void {
    const hex = key.toString("hex");
    if (!this.learnLimiter.allow("all") || !this.learnPerKey.allow(hex)) return;
    this.connect({ staticKey: Buffer.from(key) }).catch((err: Error) => {
      this.dropLog.warn("learn_peer", { err: err.message }, "no route for a key that sent a handshake");
    });
  }

  /** Requests a route to a virtual IP that has traffic but no tunnel, at most once per interval. */
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

  /** Delivers a packet from a tunnel, only if it goes from the peer's own virtual IP to this member's. */
  private onTunnelPacket(peer: Peer<NodePeerTag>, packet: Buffer): void {
    if (peer.tag.kind !== "tunnel") {
      this.counters.add("drop.packet_from_service");
      return;
    }
    const drop = tunnelPacketDrop(packet, peer.tag.virtualIPNumber, this.virtualIPNumber);
    if (drop) {
      this.counters.add(`drop.${drop}`);
      if (drop === "spoofed_source") {
        this.dropLog.warn(`spoof:${peer.tag.fqdn}`, { peer: peer.tag.fqdn, source: bytesToIPv4(packet.subarray(12, 16)) }, "dropped tunnel packet with a source other than the peer's virtual IP");
      }
      return;
    }
    this.deliver(packet);
  }
}
