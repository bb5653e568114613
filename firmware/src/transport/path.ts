// Where a peer's datagrams go: straight to a UDP endpoint, or through the
// relay service on a route it was told about.
import { Endpoint, formatEndpoint } from "../protocol/endpoint.js";

export type PeerPath =
  | { kind: "direct"; endpoint: Endpoint }
  | { kind: "relay"; routeId: number; relayKey: string };

/** Where a datagram came from, as the receive path reports it. */
export type Source =
  | { kind: "direct"; endpoint: Endpoint }
  | { kind: "relay"; routeId: number; relayKey: string };

export function describePath(p: PeerPath | Source): string {
  return p.kind === "direct" ? formatEndpoint(p.endpoint) : `relay route ${p.routeId}`;
}

export function samePath(a: PeerPath, b: Source): boolean {
  if (a.kind === "direct" && b.kind === "direct") {
    return a.endpoint.address === b.endpoint.address && a.endpoint.port === b.endpoint.port;
  }
  if (a.kind === "relay" && b.kind === "relay") return a.routeId === b.routeId && a.relayKey === b.relayKey;
  return false;
}

/** A peer heard from over a direct path within this time stays on it when relayed packets arrive. */
export const DIRECT_PREFERENCE_MS = 10_000;

/**
 * Returns whether an authenticated datagram from source moves the peer there. A
 * direct path that worked moments ago is not given up for a relayed packet,
 * which may have left the other end before it saw the direct path work:
 * without this, both ends flip between the two.
 */
export function movesPath(current: PeerPath | null, source: Source, lastDirectReceivedMs: number, nowMs: number): boolean {
  if (current && samePath(current, source)) return false;
  const directIsFresh = current?.kind === "direct" && nowMs - lastDirectReceivedMs < DIRECT_PREFERENCE_MS;
  return !(source.kind === "relay" && directIsFresh);
}
