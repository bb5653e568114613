// The server's decisions of RFC 2131 section 4.3 for a server that hands out
// reserved addresses only: each client MAC has one address, or none and then
// no reply. Pure functions: the server applies the decision.
import {
  BOOTREQUEST,
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  HLEN_ETHERNET,
  HTYPE_ETHERNET,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_REQUESTED_IP_ADDRESS,
  OPTION_SERVER_IDENTIFIER,
} from "./constants.js";
import type { LeaseRecord } from "./lease-table.js";
import { formatMac, isUnicastMac } from "./mac.js";
import type { DhcpMessage } from "./message.js";
import { readIPv4Option, readU8Option } from "./options.js";
import type { DhcpReservation } from "./types.js";

const UNSPECIFIED = "0.0.0.0";

/** Client states that send a DHCPREQUEST, as RFC 2131 section 4.3.2 distinguishes them. */
export type RequestState = "selecting" | "init_reboot" | "renewing" | "rebinding";

export type RequestDropReason =
  | "bad_op" // not a BOOTREQUEST
  | "bad_htype" // not Ethernet (htype 1, hlen 6)
  | "bad_chaddr" // all-zero or group MAC address
  | "relayed" // giaddr set: relay agents are not supported
  | "not_dhcp" // no option 53, so BOOTP
  | "unexpected_message_type"; // a type that only servers send, or an unknown one

export type CheckedRequest = { ok: true; mac: string; messageType: number } | { ok: false; reason: RequestDropReason; detail: string };

/** Checks the fields the server relies on before any decision. */
export function checkRequest(message: DhcpMessage): CheckedRequest {
  if (message.op !== BOOTREQUEST) return { ok: false, reason: "bad_op", detail: `op ${message.op} is not BOOTREQUEST (1)` };
  if (message.htype !== HTYPE_ETHERNET || message.hlen !== HLEN_ETHERNET) {
    return { ok: false, reason: "bad_htype", detail: `htype ${message.htype} hlen ${message.hlen} is not Ethernet (1, 6)` };
  }
  if (!isUnicastMac(message.chaddr)) {
    return { ok: false, reason: "bad_chaddr", detail: `chaddr ${formatMac(message.chaddr)} is not a unicast MAC address` };
  }
  if (message.giaddr !== UNSPECIFIED) return { ok: false, reason: "relayed", detail: `giaddr ${message.giaddr} names a relay agent` };
  const messageType = readU8Option(message.options, OPTION_DHCP_MESSAGE_TYPE);
  if (messageType === undefined) return { ok: false, reason: "not_dhcp", detail: "no option 53, DHCP Message Type" };
  if (![DHCPDISCOVER, DHCPREQUEST, DHCPDECLINE, DHCPRELEASE, DHCPINFORM].includes(messageType)) {
    const origin = [DHCPOFFER, DHCPACK, DHCPNAK].includes(messageType) ? "a server's" : "an unknown";
    return { ok: false, reason: "unexpected_message_type", detail: `message type ${messageType} is ${origin} type` };
  }
  return { ok: true, mac: formatMac(message.chaddr), messageType };
}

export type IgnoreReason =
  | "unknown_client" // no reservation for the MAC
  | "other_server" // server identifier names another server: the client chose it
  | "address_declined" // the reserved address is held back after a DECLINE
  | "missing_requested_address" // a REQUEST or DECLINE without the address it is about
  | "missing_ciaddr" // a RELEASE without ciaddr
  | "no_lease" // a RELEASE for a lease this server does not hold
  | "decline_mismatch"; // a DECLINE of an address not reserved for the client

export type NakReason =
  | "wrong_address" // requested address or ciaddr is not the client's reservation
  | "address_declined" // the reservation is held back after a DECLINE
  | "no_reservation"; // the reservation was removed while the client held a lease

export type Decision =
  | { action: "offer"; reservation: DhcpReservation }
  | { action: "ack"; state: RequestState; reservation: DhcpReservation }
  | { action: "nak"; state: RequestState; reason: NakReason; requestedAddress: string | undefined }
  | { action: "inform"; reservation: DhcpReservation }
  | { action: "release"; lease: LeaseRecord }
  | { action: "decline"; reservation: DhcpReservation }
  | { action: "ignore"; reason: IgnoreReason; state?: RequestState };

export interface DecisionInput {
  request: DhcpMessage;
  messageType: number;
  /** The client's reservation, undefined when the MAC has none. */
  reservation: DhcpReservation | undefined;
  /** The client's unexpired lease in this server's table. */
  lease: LeaseRecord | undefined;
  serverAddress: string;
  /** True when the datagram was sent to the server's own address, false for a broadcast. */
  toServerAddress: boolean;
  isDeclined: (address: string) => boolean;
}

/** Decides the reply to one checked request, or that there is none. */
export function decide(input: DecisionInput): Decision {
  switch (input.messageType) {
    case DHCPDISCOVER:
      return decideDiscover(input);
    case DHCPREQUEST:
      return decideRequest(input);
    case DHCPDECLINE:
      return decideDecline(input);
    case DHCPRELEASE:
      return decideRelease(input);
    default:
      return decideInform(input);
  }
}

/** RFC 2131 section 4.3.1: offer the reserved address, stay silent for other clients. */
function decideDiscover({ reservation, isDeclined }: DecisionInput): Decision {
  if (!reservation) return { action: "ignore", reason: "unknown_client" };
  if (isDeclined(reservation.address)) return { action: "ignore", reason: "address_declined" };
  return { action: "offer", reservation };
}

/**
 * RFC 2131 section 4.3.2. The state follows from the server identifier,
 * option 50, ciaddr and whether the request was unicast to this server.
 */
function decideRequest(input: DecisionInput): Decision {
  const { request, reservation, lease } = input;
  const serverIdentifier = readIPv4Option(request.options, OPTION_SERVER_IDENTIFIER);
  const optionRequested = readIPv4Option(request.options, OPTION_REQUESTED_IP_ADDRESS);
  const ciaddr = request.ciaddr === UNSPECIFIED ? undefined : request.ciaddr;

  let state: RequestState;
  let requestedAddress: string | undefined;
  if (serverIdentifier !== undefined) {
    // The client accepts an OFFER. Another server's identifier means the client chose that server.
    if (serverIdentifier !== input.serverAddress) return { action: "ignore", reason: "other_server", state: "selecting" };
    state = "selecting";
    // Option 50 must carry the offered address; some old clients put it in ciaddr.
    requestedAddress = optionRequested ?? ciaddr;
  } else if (ciaddr !== undefined) {
    // A bound client extends its lease: unicast to this server in RENEWING, broadcast in REBINDING.
    state = input.toServerAddress ? "renewing" : "rebinding";
    requestedAddress = ciaddr;
  } else if (optionRequested !== undefined) {
    state = "init_reboot";
    requestedAddress = optionRequested;
  } else {
    return { action: "ignore", reason: "missing_requested_address" };
  }

  if (!reservation) {
    // A client with a lease from this server learns from a NAK that it lost
    // its reservation. Others get no reply, as RFC 2131 requires in
    // INIT-REBOOT when the server has no record of the client.
    if (lease) return { action: "nak", state, reason: "no_reservation", requestedAddress };
    return { action: "ignore", reason: "unknown_client", state };
  }
  if (requestedAddress === undefined) return { action: "ignore", reason: "missing_requested_address", state };
  // A renewal or rebinding for another address means the reservation changed:
  // the NAK sends the client back to INIT, where it gets the new address.
  if (requestedAddress !== reservation.address) return { action: "nak", state, reason: "wrong_address", requestedAddress };
  if (input.isDeclined(reservation.address)) return { action: "nak", state, reason: "address_declined", requestedAddress };
  return { action: "ack", state, reservation };
}

/**
 * RFC 2131 section 4.3.3: the client found the address in use. Only the
 * client's own reserved address can be declined, so another client cannot
 * take a node's address away.
 */
function decideDecline({ request, reservation, serverAddress }: DecisionInput): Decision {
  const serverIdentifier = readIPv4Option(request.options, OPTION_SERVER_IDENTIFIER);
  if (serverIdentifier !== undefined && serverIdentifier !== serverAddress) return { action: "ignore", reason: "other_server" };
  if (!reservation) return { action: "ignore", reason: "unknown_client" };
  const declined = readIPv4Option(request.options, OPTION_REQUESTED_IP_ADDRESS);
  if (declined === undefined) return { action: "ignore", reason: "missing_requested_address" };
  if (declined !== reservation.address) return { action: "ignore", reason: "decline_mismatch" };
  return { action: "decline", reservation };
}

/** RFC 2131 section 4.3.4: the client gives up the lease named by chaddr and ciaddr. */
function decideRelease({ request, lease, serverAddress }: DecisionInput): Decision {
  const serverIdentifier = readIPv4Option(request.options, OPTION_SERVER_IDENTIFIER);
  if (serverIdentifier !== undefined && serverIdentifier !== serverAddress) return { action: "ignore", reason: "other_server" };
  if (request.ciaddr === UNSPECIFIED) return { action: "ignore", reason: "missing_ciaddr" };
  if (!lease || lease.address !== request.ciaddr) return { action: "ignore", reason: "no_lease" };
  return { action: "release", lease };
}

/** RFC 2131 section 4.3.5: configuration parameters for a client that already has an address, no lease. */
function decideInform({ reservation }: DecisionInput): Decision {
  if (!reservation) return { action: "ignore", reason: "unknown_client" };
  return { action: "inform", reservation };
}
