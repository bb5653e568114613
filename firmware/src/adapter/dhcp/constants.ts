// Numbers fixed by RFC 2131 (the protocol) and RFC 2132 (the options).

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

/** The op field (RFC 2131 section 2). */
export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;

/** htype and hlen of Ethernet: hardware type 1 of the IANA ARP parameters and a 6-byte address. */
export const HTYPE_ETHERNET = 1;
export const HLEN_ETHERNET = 6;

/** The broadcast bit, the leftmost bit of the flags field (RFC 2131 section 2, figure 2). */
export const FLAG_BROADCAST = 0x8000;

/** 99.130.83.99, the first four octets of the options field (RFC 2131 section 3). */
export const MAGIC_COOKIE = 0x63825363;

/** Sizes of the fixed BOOTP header fields (RFC 2131 section 2, table 1). */
export const CHADDR_BYTES = 16;
export const SNAME_BYTES = 64;
export const FILE_BYTES = 128;
/** op through file, the part before the options field. */
export const FIXED_HEADER_BYTES = 236;
export const MAGIC_COOKIE_BYTES = 4;

/**
 * A client must accept an options field of 312 octets, cookie included
 * (RFC 2131 section 2), so every client accepts a 548-byte message: a 576-byte
 * IP datagram less the 20-byte IP and 8-byte UDP headers.
 */
export const MIN_MAX_MESSAGE_BYTES = FIXED_HEADER_BYTES + 312;
/** IPv4 and UDP header bytes around a DHCP message, which option 57 counts (as ISC dhcpd does). */
export const IP_UDP_HEADER_BYTES = 28;
/** The smallest legal value of option 57, Maximum DHCP Message Size (RFC 2132 section 9.10). */
export const MIN_MAX_MESSAGE_SIZE_OPTION = 576;
/** The largest message that fits one Ethernet frame without fragmentation: 1500 less IP and UDP headers. */
export const MAX_MESSAGE_BYTES = 1500 - IP_UDP_HEADER_BYTES;
/** A BOOTP message with its 64-byte vend field (RFC 951). Some relay agents and old clients drop shorter messages. */
export const MIN_BOOTP_MESSAGE_BYTES = 300;

/** Values of option 53, DHCP Message Type (RFC 2132 section 9.6). */
export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

const MESSAGE_TYPE_NAMES: Record<number, string> = {
  [DHCPDISCOVER]: "discover",
  [DHCPOFFER]: "offer",
  [DHCPREQUEST]: "request",
  [DHCPDECLINE]: "decline",
  [DHCPACK]: "ack",
  [DHCPNAK]: "nak",
  [DHCPRELEASE]: "release",
  [DHCPINFORM]: "inform",
};

/** Returns the lower-case name of a message type for counters and logs, or "type<N>" for other values. */
export function messageTypeName(type: number): string {
  return MESSAGE_TYPE_NAMES[type] ?? `type${type}`;
}

/** Option codes, named as in RFC 2132. */
export const OPTION_PAD = 0;
export const OPTION_SUBNET_MASK = 1;
export const OPTION_ROUTER = 3;
export const OPTION_DOMAIN_NAME_SERVER = 6;
export const OPTION_HOST_NAME = 12;
export const OPTION_DOMAIN_NAME = 15;
export const OPTION_INTERFACE_MTU = 26;
export const OPTION_BROADCAST_ADDRESS = 28;
export const OPTION_REQUESTED_IP_ADDRESS = 50;
export const OPTION_IP_ADDRESS_LEASE_TIME = 51;
export const OPTION_OVERLOAD = 52;
export const OPTION_DHCP_MESSAGE_TYPE = 53;
export const OPTION_SERVER_IDENTIFIER = 54;
export const OPTION_PARAMETER_REQUEST_LIST = 55;
export const OPTION_MESSAGE = 56;
export const OPTION_MAXIMUM_DHCP_MESSAGE_SIZE = 57;
export const OPTION_RENEWAL_TIME_VALUE = 58;
export const OPTION_REBINDING_TIME_VALUE = 59;
export const OPTION_CLIENT_IDENTIFIER = 61;
export const OPTION_END = 255;

/** Values of option 52 (RFC 2132 section 9.3): which of file and sname carry options. */
export const OVERLOAD_FILE = 1;
export const OVERLOAD_SNAME = 2;
export const OVERLOAD_BOTH = 3;
