// The node's tunnels to other members, one per peer, set up from the NMS's
// route instructions. A tunnel is found by the peer's static key (engine), by
// its virtual IP (outgoing packets) or by its FQDN (the resolver).
import { Endpoint, ipv4ToNumber } from "../protocol/endpoint.js";
import { Path, Role, RouteInfo } from "../protocol/signaling.js";
import { PeerPath } from "../transport/path.js";
import { Peer } from "../transport/peer.js";

export interface TunnelTag {
  kind: "tunnel";
  routeId: number;
  nodeId: number;
  fqdn: string;
  virtualIP: string;
  /** Virtual IP as a number, compared against packet source addresses. */
  virtualIPNumber: number;
  reason: string;
  /** For a punched route: the peer's direct endpoint, tried while the relay carries the traffic. */
  directCandidate: Endpoint | null;
  /** Whether this end took part in hole punching for the route. */
  punch: boolean;
}

export interface ServiceTag {
  kind: "service";
  service: "as" | "nms" | "trs";
}

export type NodePeerTag = TunnelTag | ServiceTag;

export class TunnelTable {
  private readonly byVirtualIP = new Map<number, Peer<NodePeerTag>>();
  private readonly byFqdn = new Map<string, Peer<NodePeerTag>>();

  get(virtualIPNumber: number): Peer<NodePeerTag> | undefined {
    return this.byVirtualIP.get(virtualIPNumber);
  }

  getByFqdn(fqdn: string): Peer<NodePeerTag> | undefined {
    return this.byFqdn.get(fqdn.toLowerCase());
  }

  all(): Peer<NodePeerTag>[] {
    return [...this.byVirtualIP.values()];
  }

  /**
   * Applies a route to the peer it names: creates the peer on first sight,
   * otherwise updates its path (a new route after the peer moved). Returns the
   * peer and whether this end should start the handshake now.
   */
  apply(route: RouteInfo, existing: Peer<NodePeerTag> | undefined, relayKey: string): { peer: Peer<NodePeerTag>; initiate: boolean } {
    const tag: TunnelTag = {
      kind: "tunnel",
      routeId: route.routeId,
      nodeId: route.peer.nodeId,
      fqdn: route.peer.fqdn.toLowerCase(),
      virtualIP: route.peer.virtualIP,
      virtualIPNumber: ipv4ToNumber(route.peer.virtualIP),
      reason: route.reason,
      directCandidate: route.role === Role.Punch ? (route.peer.endpoints[0] ?? null) : null,
      punch: route.role === Role.Punch,
    };
    const path = pathOf(route, relayKey);
    const initiate = route.role !== Role.Await;
    const peer = existing ?? new Peer<NodePeerTag>(route.peer.staticKey, path, tag, initiate);
    if (existing) {
      existing.tag = tag;
      existing.initiates = initiate;
      if (path) existing.path = path;
    }
    const data = Buffer.alloc(4);
    data.writeUInt32BE(route.routeId);
    peer.initiationData = data;
    this.byVirtualIP.set(tag.virtualIPNumber, peer);
    this.byFqdn.set(tag.fqdn, peer);
    return { peer, initiate };
  }
}

/** Chooses the path traffic uses first. A punched route starts on the relay while the direct path is probed. */
function pathOf(route: RouteInfo, relayKey: string): PeerPath | null {
  if (route.path === Path.Relay || route.role === Role.Punch) return { kind: "relay", routeId: route.routeId, relayKey };
  // NOTE: only the first endpoint is tried; a peer with several addresses
  // (same site over IPv4 and IPv6) is reached on the first one NMS listed.
  const endpoint = route.peer.endpoints[0];
  return endpoint ? { kind: "direct", endpoint } : null;
}
