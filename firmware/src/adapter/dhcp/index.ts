// The adapter's DHCP server (RFC 2131, RFC 2132) for the general nodes on the LAN.
export { DhcpServer, type DhcpServerHooks } from "./server.js";
export type { DhcpLease, DhcpLeaseChange, DhcpLeaseEvent, DhcpReservation, DhcpServerOptions } from "./types.js";
export type { DhcpDatagram, DhcpTransport } from "./transport.js";
