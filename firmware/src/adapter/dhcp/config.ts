// Validation of DhcpServerOptions, so a bad setting fails at start with a
// message that names it, never later in the middle of a reply.
import net from "node:net";
import { ipv4ToNumber } from "../../protocol/endpoint.js";
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT } from "./constants.js";
import type { DhcpServerOptions } from "./types.js";

/** Settings every reply uses, checked. */
export interface ReplyConfig {
  serverAddress: string;
  subnetMask: string;
  router: string;
  dnsServers: string[];
  domainName: string;
  mtuBytes: number;
  leaseSeconds: number;
  clientPort: number;
}

export interface ServerConfig extends ReplyConfig {
  interfaceName: string;
  serverPort: number;
  declineHoldSeconds: number;
}

// After a DECLINE the client should wait at least 10 s before it starts again
// (RFC 2131 section 3.1, step 5). Holding the address back longer thins out a
// DECLINE loop while an operator removes the device that uses the address.
const DEFAULT_DECLINE_HOLD_SECONDS = 60;

const INTERFACE_NAME_PATTERN = /^[A-Za-z0-9_.@-]{1,15}$/;
// RFC 1035 section 2.3.1 labels, which is what clients put into resolv.conf.
const DOMAIN_NAME_PATTERN = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
// One option 6 value carries at most 255 bytes, 63 addresses; 16 is a practical limit.
const MAX_DNS_SERVERS = 16;
const MIN_MTU_BYTES = 68;
const MAX_MTU_BYTES = 65_535;
const MIN_LEASE_SECONDS = 2;
// 0xffffffff means an infinite lease (RFC 2131 section 3.3), which this server does not hand out.
const MAX_LEASE_SECONDS = 0xfffffffe;

/** Returns the checked settings. Throws an Error that names the invalid option. */
export function validateServerOptions(options: DhcpServerOptions): ServerConfig {
  if (typeof options.interfaceName !== "string" || !INTERFACE_NAME_PATTERN.test(options.interfaceName)) {
    throw new Error(`invalid interfaceName ${JSON.stringify(options.interfaceName)}: use 1 to 15 characters from A-Z, a-z, 0-9, "_", ".", "@" and "-"`);
  }
  const serverAddress = checkUnicastAddress("serverAddress", options.serverAddress);
  const subnetMask = checkSubnetMask(options.subnetMask);
  const router = checkUnicastAddress("router", options.router);
  if (!Array.isArray(options.dnsServers) || options.dnsServers.length > MAX_DNS_SERVERS) {
    throw new Error(`invalid dnsServers: expected an array of at most ${MAX_DNS_SERVERS} IPv4 addresses`);
  }
  const dnsServers = options.dnsServers.map((address, i) => checkUnicastAddress(`dnsServers[${i}]`, address));

  if (typeof options.domainName !== "string" || (options.domainName !== "" && !DOMAIN_NAME_PATTERN.test(options.domainName))) {
    throw new Error(`invalid domainName ${JSON.stringify(options.domainName)}: use a DNS name of letters, digits and hyphens, or "" to omit option 15`);
  }
  const mtuBytes = checkInteger("mtuBytes", options.mtuBytes, MIN_MTU_BYTES, MAX_MTU_BYTES);
  const leaseSeconds = checkInteger("leaseSeconds", options.leaseSeconds, MIN_LEASE_SECONDS, MAX_LEASE_SECONDS);

  const declineHoldSeconds = checkInteger("declineHoldSeconds", options.declineHoldSeconds ?? DEFAULT_DECLINE_HOLD_SECONDS, 0, MAX_LEASE_SECONDS);
  const serverPort = checkInteger("serverPort", options.serverPort ?? DHCP_SERVER_PORT, 1, 65_535);
  const clientPort = checkInteger("clientPort", options.clientPort ?? DHCP_CLIENT_PORT, 1, 65_535);
  if (typeof options.reservations !== "function") throw new Error("invalid reservations: expected a function that returns the reservations");
  if (typeof options.leaseFile !== "string" || options.leaseFile === "") throw new Error("invalid leaseFile: expected a file path");

  return {
    interfaceName: options.interfaceName,
    serverAddress,
    subnetMask,
    router,
    dnsServers,
    domainName: options.domainName.replace(/\.$/, ""),
    mtuBytes,
    leaseSeconds,
    declineHoldSeconds,
    serverPort,
    clientPort,
  };
}

function checkUnicastAddress(name: string, address: unknown): string {
  if (typeof address !== "string" || !net.isIPv4(address) || address === "0.0.0.0" || address === "255.255.255.255") {
    throw new Error(`invalid ${name} ${JSON.stringify(address)}: expected a unicast IPv4 address in dotted-quad notation`);
  }
  return address;
}

function checkSubnetMask(mask: unknown): string {
  if (typeof mask !== "string" || !net.isIPv4(mask)) {
    throw new Error(`invalid subnetMask ${JSON.stringify(mask)}: expected a dotted-quad mask such as "255.255.0.0"`);
  }
  const hostBits = ~ipv4ToNumber(mask) >>> 0;
  // A contiguous mask leaves host bits of the form 0...01...1, so adding one gives a power of two.
  if ((hostBits & (hostBits + 1)) !== 0 || mask === "0.0.0.0") {
    throw new Error(`invalid subnetMask ${JSON.stringify(mask)}: the one bits must be contiguous from the left, for example "255.255.0.0"`);
  }
  return mask;
}

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`invalid ${name} ${String(value)}: expected an integer from ${min} to ${max}`);
  }
  return value;
}
