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
