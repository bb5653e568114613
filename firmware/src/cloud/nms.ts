// The Node Management Service: the location registry (where each node can be
// reached and whether a NAPT sits in front of it), keep-alives, and route
// selection between two nodes with instructions pushed to both ends.
import { KeyPair } from "../protocol/crypto.js";
import { Endpoint, formatEndpoint, isRoutableUnicast, sameEndpoint } from "../protocol/endpoint.js";
import { Path, Role, RoleKind, RouteInfo, RouteTarget, ServiceInfo, Signal, SignalType } from "../protocol/signaling.js";
import { shortKey } from "../transport/secure-endpoint.js";
import { KeyedRateLimiter } from "../util/rate-limit.js";
import { Peer } from "../transport/peer.js";
import { Source } from "../transport/path.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { logger } from "../util/log.js";
import { NodeLocation, selectRoute } from "./route-selection.js";
import { CloudStore, LocationRecord, NodeRecord, RouteRecord } from "./store/index.js";

const log = logger("nms");

/** Route requests one node may make, per second and in a burst. */
const ROUTE_REQUESTS_PER_SECOND = 20;
const ROUTE_REQUEST_BURST = 40;
/** RFC 1035 section 3.1 limits a name to 255 octets on the wire, 253 as text. */
const MAX_FQDN_BYTES = 253;

/** A node not heard from for this many keep-alive intervals counts as offline. */
const OFFLINE_AFTER_INTERVALS = 3;
/** Route instructions are resent until acknowledged, this often and this many times. */
const INSTRUCTION_RETRY_MS = 1_000;
const INSTRUCTION_ATTEMPTS = 10;

interface NodeTag {
  nodeId: number;
}

interface PendingInstruction {
  nodeId: number;
  signal: Extract<Signal, { type: typeof SignalType.RouteInstruction }>;
  attempts: number;
}

export interface NmsOptions {
  store: CloudStore;
  identity: KeyPair;
  trs: ServiceInfo;
  keepaliveIntervalMs: number;
}

export class NodeManagementService {
  readonly channel: SignalChannel<NodeTag>;
  private readonly pending = new Map<number, PendingInstruction>();
  private nextInstructionId = 1;
  private readonly retryTimer: NodeJS.Timeout;
  private readonly routeLimiter = new KeyedRateLimiter<number>(ROUTE_REQUESTS_PER_SECOND, ROUTE_REQUEST_BURST);
  /** A node whose address flaps is re-routed a few times per second at most. */
  private readonly rerouteLimiter = new KeyedRateLimiter<number>(2, 4);

  constructor(private readonly opts: NmsOptions) {
    this.channel = new SignalChannel<NodeTag>(
      opts.identity,
      {
        acceptInitiation: (key) => {
          const node = opts.store.getNodeByPublicKey(key);
          if (!node) return { reject: "unknown_peer" };
          const existing = this.channel.engine.peer(key);
          return { peer: existing ?? this.channel.engine.addPeer(new Peer<NodeTag>(key, null, { nodeId: node.id }, false)) };
        },
        onSignal: (peer, signal, source) => this.handle(peer, signal, source),
        onSessionEstablished: (peer) => this.flushInstructions(peer.tag.nodeId),
        onPathChanged: (peer, _from, to) => this.onMoved(peer, to),
      },
      log,
    );
    this.retryTimer = setInterval(() => this.retryInstructions(), INSTRUCTION_RETRY_MS);
    this.retryTimer.unref();
  }

  async listen(port: number, address?: string): Promise<number> {
    const bound = await this.channel.listen(port, address);
    log.info({ port: bound, key: this.opts.identity.publicKey.toString("base64") }, "NMS listening");
    return bound;
  }

  close(): void {
    clearInterval(this.retryTimer);
    this.channel.close();
  }

  private handle(peer: Peer<NodeTag>, signal: Signal, source: Source): void {
    const counters = this.channel.engine.counters;
    switch (signal.type) {
      case SignalType.Register:
        return this.register(peer, signal.requestId, signal.localEndpoints, source);
      case SignalType.Keepalive:
        return this.keepalive(peer, signal.seq, source);
      case SignalType.RouteRequest:
        return this.routeRequest(peer, signal.requestId, signal.target);
      case SignalType.RouteInstructionAck:
        if (this.pending.get(signal.instructionId)?.nodeId === peer.tag.nodeId) this.pending.delete(signal.instructionId);
        return;
      default:
        counters.add("drop.unexpected_signal");
    }
  }

  private register(peer: Peer<NodeTag>, requestId: number, localEndpoints: Endpoint[], source: Source): void {
    if (source.kind !== "direct") return;
    // Peers on the same site receive these addresses: only ones they could send to.
    const usable = localEndpoints.filter((e) => isRoutableUnicast(e.address));
    if (usable.length !== localEndpoints.length) this.channel.engine.counters.add("register.unusable_endpoints", localEndpoints.length - usable.length);
    const previous = this.opts.store.getLocation(peer.tag.nodeId);
    const location = this.opts.store.registerLocation(peer.tag.nodeId, {
      localAddresses: usable.map(formatEndpoint),
      observedAddress: source.endpoint.address,
      observedPort: source.endpoint.port,
    });
    log.info(
      { node: peer.tag.nodeId, endpoint: formatEndpoint(source.endpoint), napt: location.napt, local: location.localAddresses },
      "node registered",
    );
    this.channel.signal(peer, {
      type: SignalType.Registered,
      requestId,
      observed: source.endpoint,
      napt: location.napt,
      keepaliveIntervalMs: this.opts.keepaliveIntervalMs,
    });
    if (previous && !sameEndpoint({ address: previous.observedAddress, port: previous.observedPort }, source.endpoint)) this.reroute(peer.tag.nodeId);
  }

  private keepalive(peer: Peer<NodeTag>, seq: number, source: Source): void {
    if (source.kind !== "direct") return;
    this.opts.store.touchLocation(peer.tag.nodeId);
    this.channel.signal(peer, { type: SignalType.KeepaliveAck, seq, observed: source.endpoint });
  }

  /** Records the new address of a node whose authenticated datagrams now come from elsewhere (it moved, or its NAPT mapping changed). */
  private onMoved(peer: Peer<NodeTag>, to: Source): void {
    if (to.kind !== "direct") return;
    const old = this.opts.store.getLocation(peer.tag.nodeId);
    if (!old || sameEndpoint({ address: old.observedAddress, port: old.observedPort }, to.endpoint)) return;
    const location = this.opts.store.registerLocation(peer.tag.nodeId, {
      localAddresses: old.localAddresses,
      observedAddress: to.endpoint.address,
      observedPort: to.endpoint.port,
    });
    log.info({ node: peer.tag.nodeId, endpoint: formatEndpoint(to.endpoint), napt: location.napt }, "node endpoint changed");
    this.reroute(peer.tag.nodeId);
  }

  /**
   * Selects the route again for every pair the moved node is part of and
   * pushes it to both ends, so a tunnel follows the node to another NAPT or
   * address family (to the relay, say, when the families no longer match).
   * The ends keep their sessions: only the path changes.
   */
  private reroute(nodeId: number): void {
    if (!this.rerouteLimiter.allow(nodeId)) return;
    this.opts.store
      .routesOf(nodeId)
      .then((routes) => this.rerouteAlong(nodeId, routes))
      // The receive path's try/catch does not cover a continuation, so a failure is logged here.
      .catch((err: unknown) => log.error({ err, node: nodeId }, "failed to select the routes of a moved node again"));
  }

  private rerouteAlong(nodeId: number, routes: RouteRecord[]): void {
    const store = this.opts.store;
    const moved = store.getNodeById(nodeId);
    const movedLocation = moved && this.locate(moved);
    if (!moved || !movedLocation) return;
    for (const route of routes) {
      const other = store.getNodeById(route.nodeA === nodeId ? route.nodeB : route.nodeA);
      const otherLocation = other && this.locate(other);
      if (!other?.publicKey || !otherLocation || !this.peerOf(other.id)?.current) continue;
      const { forRequester, forPeer } = this.buildRoutes(route.routeId, moved, movedLocation, other, otherLocation);
      this.instruct(other.id, forPeer);
      this.instruct(nodeId, forRequester);
      this.channel.engine.counters.add("route.rerouted");
      log.info({ node: nodeId, peer: other.id, route: route.routeId, reason: forRequester.reason }, "route selected again after a move");
    }
  }

  /** Both ends' view of the route between requester and peer. */
  private buildRoutes(routeId: number, requester: NodeRecord, requesterLocation: NodeLocation, peer: NodeRecord, peerLocation: NodeLocation): { forRequester: RouteInfo; forPeer: RouteInfo } {
    const decision = selectRoute(requesterLocation, peerLocation);
    const relay = decision.path === Path.Relay || decision.requesterRole === Role.Punch ? this.opts.trs : null;
    const forRequester: RouteInfo = {
      routeId,
      path: decision.path,
      role: decision.requesterRole,
      reason: decision.reason,
      peer: peerInfo(peer, decision.peerEndpointsForRequester),
      relay,
    };
    const forPeer: RouteInfo = {
      ...forRequester,
      role: otherRole(decision.requesterRole),
      peer: peerInfo(requester, decision.requesterEndpointsForPeer),
    };
    return { forRequester, forPeer };
  }

  private routeRequest(peer: Peer<NodeTag>, requestId: number, target: RouteTarget): void {
    const store = this.opts.store;
    const fail = (code: string, message: string) => {
      this.channel.engine.counters.add(`route.${code}`);
      this.channel.signal(peer, { type: SignalType.Error, requestId, code, message });
    };
    // Each request makes the NMS push an instruction to the other end: a node may not flood them.
    if (!this.routeLimiter.allow(peer.tag.nodeId)) return fail("rate_limited", `more than ${ROUTE_REQUESTS_PER_SECOND} route requests per second`);
    if ("fqdn" in target && target.fqdn.length > MAX_FQDN_BYTES) return fail("invalid_name", `FQDN longer than ${MAX_FQDN_BYTES} bytes`);
    const requester = store.getNodeById(peer.tag.nodeId);
    const node = targetNode(store, target);
    const targetText = describeTarget(target);
    if (!requester) return fail("not_found", "requesting node no longer exists");
    if (!node || !node.publicKey) return fail("not_found", `no provisioned node ${targetText}`);
    if (node.id === requester.id) return fail("self", `${targetText} is the requesting node`);

    const requesterLocation = this.locate(requester);
    const peerLocation = this.locate(node);
    if (!requesterLocation) return fail("not_registered", "register before requesting routes");
    if (!peerLocation) return fail("offline", `${node.fqdn} is offline`);

    const started = process.hrtime.bigint();
    // The route id goes out only once it is on disk. Meanwhile the event loop serves other nodes.
    store
      .routeFor(requester.id, node.id)
      .then(
        (route) => {
          const { forRequester, forPeer } = this.buildRoutes(route.routeId, requester, requesterLocation, node, peerLocation);
          // The peer learns first, so it accepts the requester's handshake when it arrives.
          this.instruct(node.id, forPeer);
          this.channel.signal(peer, { type: SignalType.RouteResponse, requestId, route: forRequester });
          this.channel.engine.counters.add("route.selected");
          const selectUs = Number(process.hrtime.bigint() - started) / 1000;
          const path = forRequester.path === Path.Direct ? "direct" : "relay";
          log.info({ node: requester.id, peer: node.id, route: route.routeId, path, reason: forRequester.reason, selectUs }, "route selected");
        },
        (err: unknown) => {
          log.error({ err, node: requester.id, peer: node.id }, "failed to store a route");
          fail("internal_error", "the NMS failed to store the route; try again");
        },
      )
      // The receive path's try/catch does not cover a continuation, so a failure is counted and logged here.
      .catch((err: unknown) => {
        this.channel.engine.counters.add("drop.internal_error");
        log.error({ err, node: requester.id, peer: node.id }, "failed to send a selected route");
      });
  }

  private locate(node: NodeRecord): NodeLocation | null {
    const loc: LocationRecord | undefined = this.opts.store.getLocation(node.id);
    if (!loc) return null;
    if (Date.now() - loc.lastSeen > OFFLINE_AFTER_INTERVALS * this.opts.keepaliveIntervalMs) return null;
    return {
      nodeId: node.id,
      localAddresses: loc.localAddresses,
      observed: { address: loc.observedAddress, port: loc.observedPort },
      family: loc.family,
      napt: loc.napt,
    };
  }

  private instruct(nodeId: number, route: RouteInfo): void {
    const instructionId = this.nextInstructionId++;
    const pending: PendingInstruction = { nodeId, signal: { type: SignalType.RouteInstruction, instructionId, route }, attempts: 0 };
    this.pending.set(instructionId, pending);
    this.sendInstruction(pending);
  }

  private sendInstruction(p: PendingInstruction): void {
    const peer = this.peerOf(p.nodeId);
    if (!peer?.current) return; // sent when the node's session comes up
    p.attempts++;
    this.channel.signal(peer, p.signal);
  }

  private flushInstructions(nodeId: number): void {
    for (const p of this.pending.values()) if (p.nodeId === nodeId) this.sendInstruction(p);
  }

  private retryInstructions(): void {
    for (const [id, p] of this.pending) {
      if (p.attempts >= INSTRUCTION_ATTEMPTS) {
        this.pending.delete(id);
        this.channel.engine.counters.add("route.instruction_unacknowledged");
        log.warn({ node: p.nodeId, route: p.signal.route.routeId }, "route instruction not acknowledged");
        continue;
      }
      this.sendInstruction(p);
    }
  }

  /** The session peer of a node, found by its key: a scan of all peers cost O(n) per instruction. */
  private peerOf(nodeId: number): Peer<NodeTag> | undefined {
    const key = this.opts.store.getNodeById(nodeId)?.publicKey;
    const peer = key ? this.channel.engine.peer(key) : undefined;
    return peer?.tag.nodeId === nodeId ? peer : undefined;
  }
}

function otherRole(role: RoleKind): RoleKind {
  if (role === Role.Punch) return Role.Punch;
  return role === Role.Initiate ? Role.Await : Role.Initiate;
}

function describeTarget(target: RouteTarget): string {
  if ("fqdn" in target) return target.fqdn;
  if ("virtualIP" in target) return target.virtualIP;
  return `key ${shortKey(target.staticKey)}`;
}

function targetNode(store: CloudStore, target: RouteTarget): NodeRecord | undefined {
  if ("fqdn" in target) return store.getNodeByFqdn(target.fqdn);
  if ("virtualIP" in target) return store.getNodeByVirtualIP(target.virtualIP);
  return store.getNodeByPublicKey(target.staticKey);
}

function peerInfo(node: NodeRecord, endpoints: Endpoint[]): RouteInfo["peer"] {
  return { nodeId: node.id, fqdn: node.fqdn, virtualIP: node.virtualIP, staticKey: node.publicKey!, endpoints };
}
