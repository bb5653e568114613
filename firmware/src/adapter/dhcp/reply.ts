// Server replies: header fields from RFC 2131 section 4.3.1 table 3, the
// options for each reply, the size limit and the destination (section 4.1).
import { ipv4ToNumber } from "../../protocol/endpoint.js";
import type { ReplyConfig } from "./config.js";
import {
  BOOTREPLY,
  DHCPACK,
  DHCPNAK,
  DHCPOFFER,
  IP_UDP_HEADER_BYTES,
  MAX_MESSAGE_BYTES,
  MIN_MAX_MESSAGE_BYTES,
  MIN_MAX_MESSAGE_SIZE_OPTION,
  OPTION_BROADCAST_ADDRESS,
  OPTION_CLIENT_IDENTIFIER,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_DOMAIN_NAME,
  OPTION_DOMAIN_NAME_SERVER,
  OPTION_HOST_NAME,
  OPTION_INTERFACE_MTU,
  OPTION_IP_ADDRESS_LEASE_TIME,
  OPTION_MAXIMUM_DHCP_MESSAGE_SIZE,
  OPTION_MESSAGE,
  OPTION_REBINDING_TIME_VALUE,
  OPTION_RENEWAL_TIME_VALUE,
  OPTION_ROUTER,
  OPTION_SERVER_IDENTIFIER,
  OPTION_SUBNET_MASK,
} from "./constants.js";
import { EMPTY_MESSAGE_BYTES, encodeMessage, type DhcpHeader, type DhcpMessage } from "./message.js";
import {
  encodedOptionBytes,
  ipv4ListValue,
  ipv4Value,
  readParameterRequestList,
  readU16Option,
  textValue,
  u16Value,
  u32Value,
  u8Value,
  type OptionEntry,
} from "./options.js";

const LIMITED_BROADCAST = "255.255.255.255";
const UNSPECIFIED = "0.0.0.0";

/** Reply type and its data. `address` is yiaddr for an OFFER or ACK to a REQUEST, and absent for an ACK to an INFORM and for a NAK. */
export type ReplyKind =
  | { type: "offer"; address: string; hostname?: string }
  | { type: "ack"; address: string; hostname?: string }
  | { type: "inform_ack"; hostname?: string }
  | { type: "nak"; message: string };

export interface Reply {
  data: Buffer;
  destination: { address: string; port: number };
  /** Option codes left out because the client's size limit had no room for them. */
  omittedOptions: number[];
}

/** Builds and encodes the reply to `request`. */
export function buildReply(request: DhcpMessage, kind: ReplyKind, config: ReplyConfig): Reply {
  const candidates = replyOptions(request, kind, config);
  const { included, omitted } = fitOptions(candidates, maxReplyBytes(request) - EMPTY_MESSAGE_BYTES);
  return {
    data: encodeMessage(replyHeader(request, kind), included),
    destination: replyDestination(request, kind, config.clientPort),
    omittedOptions: omitted,
  };
}

/** Header fields of RFC 2131 table 3. siaddr stays 0 because this server names no boot server. */
function replyHeader(request: DhcpMessage, kind: ReplyKind): DhcpHeader {
  const ack = kind.type === "ack" || kind.type === "inform_ack";
  return {
    op: BOOTREPLY,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    flags: request.flags,
    ciaddr: ack ? request.ciaddr : UNSPECIFIED,
    yiaddr: kind.type === "offer" || kind.type === "ack" ? kind.address : UNSPECIFIED,
    siaddr: UNSPECIFIED,
    giaddr: request.giaddr,
    chaddr: request.chaddr,
    sname: Buffer.alloc(0),
    file: Buffer.alloc(0),
  };
}

/**
 * Returns the largest reply the client accepts: option 57 (RFC 2132 section
 * 9.10) less IP and UDP headers, at least 548 bytes, which every client must
 * accept, and at most one Ethernet frame.
 */
export function maxReplyBytes(request: DhcpMessage): number {
  const option = readU16Option(request.options, OPTION_MAXIMUM_DHCP_MESSAGE_SIZE);
  if (option === undefined) return MIN_MAX_MESSAGE_BYTES;
  const datagramBytes = Math.max(option, MIN_MAX_MESSAGE_SIZE_OPTION);
  return Math.min(datagramBytes - IP_UDP_HEADER_BYTES, MAX_MESSAGE_BYTES);
}

/**
 * Returns the destination of the reply, following RFC 2131 section 4.1 for a
 * zero giaddr, because relayed requests are dropped before this. A NAK is
 * broadcast. A reply to a client with ciaddr goes to ciaddr. Every other reply
 * is broadcast: section 4.1 prefers a unicast to yiaddr when the broadcast bit
 * is clear, but the client does not hold yiaddr yet, so the kernel would need
 * an ARP entry for it. The same section allows a broadcast when unicasting is
 * not possible.
 */
export function replyDestination(request: DhcpMessage, kind: ReplyKind, clientPort: number): { address: string; port: number } {
  if (kind.type === "nak") return { address: LIMITED_BROADCAST, port: clientPort };
  if (request.ciaddr !== UNSPECIFIED) return { address: request.ciaddr, port: clientPort };
  return { address: LIMITED_BROADCAST, port: clientPort };
}

/** Omission rank of an option when the reply is too large. Options of lower rank stay. */
const Rank = { Required: 0, Requested: 1, Unrequested: 2 } as const;
type Rank = (typeof Rank)[keyof typeof Rank];

interface CandidateOption extends OptionEntry {
  rank: Rank;
}

/**
 * Returns the reply's options in wire order: message type and server
 * identifier, lease times, then the client's option 55 in its order (RFC 2132
 * section 9.8), then the configured options it did not request, then its
 * client identifier. Router, mask, DNS servers and MTU go to every client
 * because they differ from the Host Requirements defaults (RFC 2131 section
 * 4.3.1). Option 26 goes unrequested because busybox udhcpc does not request
 * it by default.
 */
function replyOptions(request: DhcpMessage, kind: ReplyKind, config: ReplyConfig): CandidateOption[] {
  let messageType = DHCPACK;
  if (kind.type === "offer") messageType = DHCPOFFER;
  if (kind.type === "nak") messageType = DHCPNAK;
  const head: CandidateOption[] = [
    { code: OPTION_DHCP_MESSAGE_TYPE, value: u8Value(messageType), rank: Rank.Required },
    { code: OPTION_SERVER_IDENTIFIER, value: ipv4Value(config.serverAddress), rank: Rank.Required },
  ];
  // RFC 6842: a server must echo the client identifier in OFFER, ACK and NAK.
  const clientIdentifier = request.options.get(OPTION_CLIENT_IDENTIFIER);
  const tail: CandidateOption[] = clientIdentifier ? [{ code: OPTION_CLIENT_IDENTIFIER, value: clientIdentifier, rank: Rank.Required }] : [];

  if (kind.type === "nak") {
    return [...head, { code: OPTION_MESSAGE, value: textValue(kind.message), rank: Rank.Requested }, ...tail];
  }
  if (kind.type !== "inform_ack") {
    // RFC 2131 table 3: lease times go in OFFER and ACK, never in the ACK to an INFORM.
    head.push(
      { code: OPTION_IP_ADDRESS_LEASE_TIME, value: u32Value(config.leaseSeconds), rank: Rank.Required },
      { code: OPTION_RENEWAL_TIME_VALUE, value: u32Value(Math.floor(config.leaseSeconds * 0.5)), rank: Rank.Required },
      { code: OPTION_REBINDING_TIME_VALUE, value: u32Value(Math.floor(config.leaseSeconds * 0.875)), rank: Rank.Required },
    );
  }

  const address = kind.type === "offer" || kind.type === "ack" ? kind.address : undefined;
  const parameters = parameterValues(config, address, kind.hostname);
  const requested = readParameterRequestList(request.options);
  const middle: CandidateOption[] = [];
  for (const code of requested) {
    const parameter = parameters.get(code);
    if (parameter) middle.push({ code, value: parameter.value, rank: parameter.required ? Rank.Required : Rank.Requested });
  }
  for (const [code, parameter] of parameters) {
    if (parameter.always && !requested.includes(code)) {
      middle.push({ code, value: parameter.value, rank: parameter.required ? Rank.Required : Rank.Unrequested });
    }
  }
  return [...head, ...middle, ...tail];
}

interface ParameterValue {
  value: Buffer;
  /** Sent without a request. */
  always: boolean;
  /** Kept when the reply is too large. */
  required: boolean;
}

/** Returns the parameters this server can supply; option 28 needs the client's address. */
function parameterValues(config: ReplyConfig, address: string | undefined, hostname: string | undefined): Map<number, ParameterValue> {
  const parameters = new Map<number, ParameterValue>();
  const always = (code: number, value: Buffer, required: boolean): void => {
    parameters.set(code, { value, always: true, required });
  };
  always(OPTION_SUBNET_MASK, ipv4Value(config.subnetMask), true);
  always(OPTION_ROUTER, ipv4Value(config.router), true);
  if (config.dnsServers.length > 0) always(OPTION_DOMAIN_NAME_SERVER, ipv4ListValue(config.dnsServers), true);
  always(OPTION_INTERFACE_MTU, u16Value(config.mtuBytes), true);
  if (config.domainName !== "") always(OPTION_DOMAIN_NAME, textValue(config.domainName), false);
  if (hostname) parameters.set(OPTION_HOST_NAME, { value: textValue(hostname), always: false, required: false });
  if (address !== undefined) {
    const broadcast = (ipv4ToNumber(address) | ~ipv4ToNumber(config.subnetMask)) >>> 0;
    parameters.set(OPTION_BROADCAST_ADDRESS, { value: u32Value(broadcast), always: false, required: false });
  }
  return parameters;
}

/** Chooses options by rank until `budgetBytes` is spent and returns them in their original order. */
function fitOptions(candidates: CandidateOption[], budgetBytes: number): { included: OptionEntry[]; omitted: number[] } {
  const byRank = candidates.map((candidate, index) => ({ candidate, index })).sort((a, b) => a.candidate.rank - b.candidate.rank || a.index - b.index);
  const keep = new Set<number>();
  const omitted: number[] = [];
  let remaining = budgetBytes;
  for (const { candidate, index } of byRank) {
    const bytes = encodedOptionBytes(candidate);
    if (bytes <= remaining) {
      keep.add(index);
      remaining -= bytes;
    } else {
      omitted.push(candidate.code);
    }
  }
  const included = candidates.filter((_candidate, index) => keep.has(index)).map(({ code, value }) => ({ code, value }));
  return { included, omitted };
}
