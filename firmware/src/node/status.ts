// The status report of `cyphonic status`: identity, cloud link, one row per
// tunnel (path, endpoint, last handshake, bytes) and the drop counters.
import { DataplaneStatus } from "../dataplane/supervisor.js";
import { describePath } from "../transport/path.js";
import { Peer } from "../transport/peer.js";
import { Counters } from "../util/counters.js";
import { NodeIdentity } from "./identity.js";
import { NmsStatus } from "./nms-link.js";
import { Member } from "./member.js";
import { NodePeerTag, TunnelTag } from "./tunnels.js";

export interface TunnelStatus {
  /** The local member (this node, or a general node behind an adapter) the tunnel belongs to. */
  member: string;
  fqdn: string;
  virtualIP: string;
  path: "direct" | "relay" | "none";
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
  /** The dataplane worker: its process, restarts and the last recovery gap. */
  dataplane?: DataplaneStatus | null;
}

export function buildStatus(
  identity: NodeIdentity | null,
  port: number,
  members: Member[],
  counters: Counters[],
  dnsCounters: Counters | null,
): NodeStatus {
  const rows: TunnelStatus[] = [];
  const merged: Record<string, number> = {};
  const add = (snapshot: Record<string, number>, prefix = "") => {
    for (const [k, v] of Object.entries(snapshot)) merged[prefix + k] = (merged[prefix + k] ?? 0) + v;
  };
  for (const c of counters) add(c.snapshot());
  add(dnsCounters?.snapshot() ?? {}, "dns.");
  const primary = members.find((m) => m.identity.nodeId === identity?.nodeId) ?? null;
  for (const member of members) {
    add(member.channel.engine.counters.snapshot());
    for (const peer of member.tunnels.all()) rows.push(tunnelRow(member, peer));
  }
  return {
    node: identity && { id: identity.nodeId, fqdn: identity.fqdn, virtualIP: identity.virtualIP },
    port,
    nms: primary?.nms.status() ?? null,
    tunnels: rows,
    counters: merged,
  };
}

function tunnelRow(member: Member, peer: Peer<NodePeerTag>): TunnelStatus {
  const tag = peer.tag as TunnelTag;
  return {
    member: member.identity.fqdn,
    fqdn: tag.fqdn,
    virtualIP: tag.virtualIP,
    path: peer.path?.kind ?? "none",
    reason: tag.reason,
    endpoint: peer.path ? describePath(peer.path) : null,
    session: peer.current !== null,
    lastHandshakeMs: peer.lastHandshakeMs,
    bytesSent: peer.bytesSent,
    bytesReceived: peer.bytesReceived,
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
    // An adapter's tunnels belong to the general nodes it speaks for.
    if (s.node && t.member !== s.node.fqdn) lines.push(`  for: ${t.member}`);
  }
  return lines.join("\n");
}
