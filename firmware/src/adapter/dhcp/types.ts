// Public types of the adapter's DHCP server.
import type { Logger } from "../../util/log.js";

/** A general node's fixed address, from the registry of the cloud. */
export interface DhcpReservation {
  /** Ethernet address, "aa:bb:cc:dd:ee:ff". Upper case is accepted and compared as lower case. */
  mac: string;
  /** The node's virtual IPv4 address, handed out as yiaddr. */
  address: string;
  /** Sent as option 12, Host Name, to a client that requests it. */
  hostname?: string;
}

export type DhcpLeaseEvent = "bound" | "renewed" | "released" | "declined" | "expired";

export interface DhcpLeaseChange {
  mac: string;
  address: string;
  event: DhcpLeaseEvent;
}

export interface DhcpLease {
  mac: string;
  address: string;
  /** End of the lease, in milliseconds since the Unix epoch. */
  expiresMs: number;
}

export interface DhcpServerOptions {
  /** The LAN interface. The server receives and sends only through it (SO_BINDTODEVICE). */
  interfaceName: string;
  /** Option 54, Server Identifier: the adapter's virtual IPv4 address, which should be assigned to the LAN interface. */
  serverAddress: string;
  /** Option 1, Subnet Mask, for example "255.255.0.0". */
  subnetMask: string;
  /** Option 3, Router. */
  router: string;
  /** Option 6, Domain Name Server. An empty list omits the option. */
  dnsServers: string[];
  /** Option 15, Domain Name. An empty string omits the option. */
  domainName: string;
  /** Option 26, Interface MTU, sent whether or not the client requests it. */
  mtuBytes: number;
  /** Option 51, from 2 to 4294967294. T1 (option 58) is half of it and T2 (option 59) seven eighths, as RFC 2131 section 4.4.5 recommends. */
  leaseSeconds: number;
  /** Returns the current reservations. Called once per message, so changes apply to the next message. */
  reservations: () => DhcpReservation[];
  /** JSON file of the lease table, replaced atomically on every change. */
  leaseFile: string;
  /** Called after every lease change. Exceptions are logged and ignored. */
  onLease?: (change: DhcpLeaseChange) => void;
  /** How long a declined address is withheld from its client, 60 s when omitted. */
  declineHoldSeconds?: number;
  /** UDP port to listen on, 67 when omitted. */
  serverPort?: number;
  /** UDP port replies go to, 68 when omitted. */
  clientPort?: number;
  /** Logger to use in place of the "dhcp" component logger. */
  logger?: Logger;
}
