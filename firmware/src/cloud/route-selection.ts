// Route selection: given where two nodes are, decide how their tunnel is
// built and which end sends the first handshake. Pure, so every case is a
// table-driven unit test.
import { Endpoint, parseEndpoint } from "../protocol/endpoint.js";
import { Path, PathKind, Role, RoleKind } from "../protocol/signaling.js";

export interface NodeLocation {
  nodeId: number;
  localAddresses: string[];
  observed: Endpoint;
  family: 4 | 6;
  napt: boolean;
}

export interface RouteDecision {
  path: PathKind;
  reason: string;
  /** Role of the requesting end; the other end gets the opposite (Punch for both). */
  requesterRole: RoleKind;
  /** Endpoints the requester should try for the peer, and the peer for the requester. */
  peerEndpointsForRequester: Endpoint[];
  requesterEndpointsForPeer: Endpoint[];
}

export function selectRoute(requester: NodeLocation, peer: NodeLocation): RouteDecision {
  const direct = (reason: string, requesterRole: RoleKind): RouteDecision => ({
    path: Path.Direct,
    reason,
    requesterRole,
    peerEndpointsForRequester: [peer.observed],
    requesterEndpointsForPeer: [requester.observed],
  });

  // Same site: both behind the same NAPT (one public address). Use the private
  // addresses so the path does not depend on the NAPT hairpinning.
  if (requester.napt && peer.napt && requester.observed.address === peer.observed.address) {
    return {
      path: Path.Direct,
      reason: "same site: private addresses behind one NAPT",
      requesterRole: Role.Initiate,
      peerEndpointsForRequester: sameFamily(peer.localAddresses, requester.family),
      requesterEndpointsForPeer: sameFamily(requester.localAddresses, peer.family),
    };
  }
  if (requester.family !== peer.family) {
    return relay(`no common address family (IPv${requester.family} and IPv${peer.family})`);
  }
  if (!requester.napt && !peer.napt) return direct("both ends public", Role.Initiate);
  // A NAPT forwards inbound packets only after an outbound one opened the
  // mapping, so the end behind it sends the first handshake.
  if (requester.napt && !peer.napt) return direct("requester behind NAPT sends first", Role.Initiate);
  if (!requester.napt && peer.napt) return direct("peer behind NAPT sends first", Role.Await);
  // Both behind NAPT: both send at once, so each NAPT sees outgoing traffic
  // to the other's public endpoint and admits its packets. This works when
  // both map endpoint-independently (RFC 4787 section 4.1); otherwise the
  // ends fall back to the relay after a bounded time.
  return direct("both ends behind NAPT: coordinated hole punching", Role.Punch);
}

function relay(reason: string): RouteDecision {
  return { path: Path.Relay, reason, requesterRole: Role.Initiate, peerEndpointsForRequester: [], requesterEndpointsForPeer: [] };
}

function sameFamily(addresses: string[], family: 4 | 6): Endpoint[] {
  const out: Endpoint[] = [];
  for (const text of addresses) {
    try {
      const e = parseEndpoint(text);
      if ((family === 6) === e.address.includes(":")) out.push(e);
    } catch {
      // A malformed stored address is skipped; registration validated it once.
    }
  }
  return out;
}
