// The status report of `cyphonic status`: identity, cloud link, one row per
// tunnel (path, endpoint, last handshake, bytes) and the drop counters.
import { describePath } from "../transport/path.js";
import { Peer } from "../transport/peer.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { Counters } from "../util/counters.js";
import { NodeIdentity } from "./identity.js";
import { NmsStatus } from "./nms-link.js";
import { NodePeerTag } from "./tunnels.js";

export interface TunnelStatus {
  fqdn: string;
  virtualIP: string;
  path: "direct" | "relay";
  reason: string;
  endpoint: string | null;
  session: boolean;
  lastHandshakeMs: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface NodeStatus {
  node: { id: number; fqdn: string; virtualIP: string } | null;
  port: number;
  nms: NmsStatus | null;
  tunnels: TunnelStatus[];
  counters: Record<string, number>;
}

export function buildStatus(
  identity: NodeIdentity | null,
  nms: NmsStatus | null,
  tunnels: Peer<NodePeerTag>[],
  channel: SignalChannel<NodePeerTag>,
  counters: Counters,
  dnsCounters: Counters | null,
): NodeStatus {
  const rows: TunnelStatus[] = [];
  for (const peer of tunnels) {
    if (peer.tag.kind !== "tunnel") continue;
    rows.push({
      fqdn: peer.tag.fqdn,
      virtualIP: peer.tag.virtualIP,
      path: peer.tag.pathKind,
      reason: peer.tag.reason,
      endpoint: peer.path ? describePath(peer.path) : null,
      session: peer.current !== null,
      lastHandshakeMs: peer.lastHandshakeMs,
      bytesSent: peer.bytesSent,
      bytesReceived: peer.bytesReceived,
    });
  }
  const merged: Record<string, number> = { ...channel.engine.counters.snapshot(), ...counters.snapshot() };
  for (const [k, v] of Object.entries(dnsCounters?.snapshot() ?? {})) merged[`dns.${k}`] = v;
  return {
    node: identity && { id: identity.nodeId, fqdn: identity.fqdn, virtualIP: identity.virtualIP },
    port: channel.port,
    nms,
    tunnels: rows,
    counters: merged,
  };
}

export function formatStatus(s: NodeStatus, now = Date.now()): string {
  const lines: string[] = [];
  lines.push(s.node ? `node ${s.node.fqdn}  virtual IP ${s.node.virtualIP}  id ${s.node.id}  UDP port ${s.port}` : "node not provisioned");
  if (s.nms) {
    const ack = s.nms.lastAckMs ? `${Math.round((now - s.nms.lastAckMs) / 1000)} s ago` : "never";
    lines.push(`nms   ${s.nms.registered ? "registered" : "NOT registered"}  seen as ${s.nms.observed ?? "-"}  napt ${s.nms.napt ?? "-"}  last answer ${ack}`);
  }
  lines.push("");
  lines.push("peer                              virtual IP       path    endpoint                 handshake   sent       received");
  for (const t of s.tunnels) {
    const hs = t.lastHandshakeMs ? `${Math.round((now - t.lastHandshakeMs) / 1000)} s ago` : "none";
    lines.push(
      `${t.fqdn.padEnd(34)}${t.virtualIP.padEnd(17)}${t.path.padEnd(8)}${(t.endpoint ?? "-").padEnd(25)}${hs.padEnd(12)}${String(t.bytesSent).padEnd(11)}${t.bytesReceived}`,
    );
    lines.push(`  reason: ${t.reason}`);
  }
  return lines.join("\n");
}
