// The adapter's nftables table: the set of leased (MAC, IP) pairs, the
// forward rules between the LAN and the TUN device, and the input rules for
// traffic from the LAN to the adapter itself.
import type { LanConfig } from "./options.js";

export const NFT_TABLE_FAMILY = "inet";
export const NFT_TABLE_NAME = "cyphonic_adapter";
/** Set of `ether_addr . ipv4_addr` pairs that have a DHCP lease. */
export const LEASE_SET_NAME = "leases";
/** Named counter of packets from the LAN to be forwarded that were dropped because their (MAC, IP) pair has no lease. */
export const SPOOFED_FORWARD_COUNTER = "lan_spoofed_forward";
/** Named counter of packets from the LAN to the adapter that were dropped because their (MAC, IP) pair has no lease. */
export const SPOOFED_INPUT_COUNTER = "lan_spoofed_input";

// nftables rejects longer comments (NFTNL_UDATA_COMMENT_MAXLEN in libnftnl).
const MAX_COMMENT_BYTES = 128;
const TABLE_COMMENT_PREFIX = "saved sysctls:";

// UDP ports of DHCP servers (RFC 2131 section 4.1) and DNS servers (RFC 1035 section 4.2).
const DHCP_SERVER_PORT = 67;
const DNS_PORT = 53;

/** Returns the table comment that stores the original sysctl values, as formatSavedSysctls returns them. */
export function tableComment(savedSysctls: string): string {
  const comment = `${TABLE_COMMENT_PREFIX} ${savedSysctls}`.trimEnd();
  if (Buffer.byteLength(comment) > MAX_COMMENT_BYTES) {
    throw new RangeError(`nftables table comment is ${Buffer.byteLength(comment)} bytes, more than the ${MAX_COMMENT_BYTES} nftables accepts: ${comment}`);
  }
  return comment;
}

/** Extracts the saved sysctl values from `nft list table` output, or returns "" when the comment is missing. */
export function savedSysctlsFromListing(listing: string): string {
  const match = /^\s*comment "([^"]*)"/m.exec(listing);
  const comment = match?.[1] ?? "";
  return comment.startsWith(TABLE_COMMENT_PREFIX) ? comment.slice(TABLE_COMMENT_PREFIX.length).trim() : "";
}

/**
 * Returns the ruleset for `nft -f -`. nft commits a whole file as one
 * transaction, so the table is replaced atomically: "add table" creates it
 * when missing, so that "delete table" cannot fail, and the table definition
 * then creates it anew, with an empty lease set and zeroed counters.
 *
 * Both base chains have policy accept, so traffic that does not touch the LAN
 * interface is left to the rest of the firewall.
 */
export function buildLanRuleset(config: LanConfig, comment: string): string {
  const lan = JSON.stringify(config.lanInterface);
  const tun = JSON.stringify(config.tunInterface);
  const table = `${NFT_TABLE_FAMILY} ${NFT_TABLE_NAME}`;
  const pairNotLeased = `ether saddr . ip saddr != @${LEASE_SET_NAME}`;
  const clampMss = `tcp flags syn tcp option maxseg size > ${config.tcpMssBytes} tcp option maxseg size set ${config.tcpMssBytes}`;
  return `add table ${table}
delete table ${table}
table ${table} {
  comment ${JSON.stringify(comment)}

  counter ${SPOOFED_FORWARD_COUNTER} {
  }

  counter ${SPOOFED_INPUT_COUNTER} {
  }

  set ${LEASE_SET_NAME} {
    type ether_addr . ipv4_addr
  }

  chain forward {
    type filter hook forward priority filter; policy accept;
    # The overlay is IPv4 only.
    iifname ${lan} meta nfproto != ipv4 drop
    iifname ${lan} ${pairNotLeased} counter name ${JSON.stringify(SPOOFED_FORWARD_COUNTER)} drop
    # General nodes reach the overlay only: not the underlay, and not each other through the adapter.
    iifname ${lan} oifname != ${tun} drop
    oifname ${lan} iifname != ${tun} drop
    # The tunnel carries at most tunnelMtu-byte packets, so SYN and SYN-ACK in
    # both directions announce at most tunnelMtu - 40 bytes of MSS.
    iifname ${lan} ${clampMss}
    oifname ${lan} ${clampMss}
  }

  chain input {
    type filter hook input priority filter; policy accept;
    iifname ${lan} meta nfproto != ipv4 drop
    # DHCP passes before the pair check, because a client without a lease
    # sends from 0.0.0.0 (RFC 2131 section 4.1).
    iifname ${lan} udp dport ${DHCP_SERVER_PORT} accept
    iifname ${lan} ${pairNotLeased} counter name ${JSON.stringify(SPOOFED_INPUT_COUNTER)} drop
    iifname ${lan} ip daddr ${config.adapterVirtualIP} udp dport ${DNS_PORT} accept
    iifname ${lan} ip daddr ${config.adapterVirtualIP} tcp dport ${DNS_PORT} accept
    iifname ${lan} ip daddr ${config.adapterVirtualIP} ip protocol icmp accept
    iifname ${lan} drop
  }
}
`;
}

/** Returns the `nft` arguments that add or delete one (MAC, IP) pair in the lease set. */
export function leaseElementArgs(operation: "add" | "delete", mac: string, virtualIP: string): string[] {
  return [operation, "element", NFT_TABLE_FAMILY, NFT_TABLE_NAME, LEASE_SET_NAME, `{ ${mac} . ${virtualIP} }`];
}
