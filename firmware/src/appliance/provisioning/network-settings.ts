// The optional network settings of the boot token file: which port is WAN
// and which is LAN, and how the WAN port gets its IPv4 address. A field that
// the file does not set leaves the appliance's current setting unchanged, so
// a second token file with only the token lines keeps a static WAN address.
import net from "node:net";
import { ipv4ToNumber, isRoutableUnicast } from "../../protocol/endpoint.js";
import { BootTokenFileError } from "./errors.js";

export const NETWORK_FIELDS = ["wan_interface", "lan_interface", "wan_mode", "wan_address", "wan_gateway", "wan_dns"] as const;

/** A value from the token file with its 1-based line number. */
export interface FieldValue {
  value: string;
  line: number;
}

export type WanIPv4 = { mode: "dhcp" } | { mode: "static"; address: string; prefixLength: number; gateway: string; dns: string[] };

/** Settings that the token file sets. An absent property leaves the current setting unchanged. */
export interface NetworkChanges {
  wanInterface?: string;
  lanInterface?: string;
  wanIPv4?: WanIPv4;
}

/** The kernel limits names to 15 bytes (IFNAMSIZ 16 with the NUL). The character set keeps quotes and spaces out of nft and keyfiles. */
const INTERFACE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const STATIC_FIELDS = ["wan_address", "wan_gateway", "wan_dns"] as const;

/** Validates the network fields of a token file. Throws BootTokenFileError naming the line, the field and the fix. */
export function parseNetworkChanges(fields: ReadonlyMap<string, FieldValue>): NetworkChanges {
  for (const [key, field] of fields) {
    if (!field.value) throw new BootTokenFileError(field.line, key, `${key} is empty; write a value after "=" or delete the line`);
  }
  const changes: NetworkChanges = {};
  const wan = fields.get("wan_interface");
  if (wan) changes.wanInterface = parseInterfaceName("wan_interface", wan);
  const lan = fields.get("lan_interface");
  if (lan) changes.lanInterface = parseInterfaceName("lan_interface", lan);
  if (wan && lan && changes.wanInterface === changes.lanInterface) {
    throw new BootTokenFileError(lan.line, "lan_interface", `lan_interface is ${lan.value}, the same port as wan_interface on line ${wan.line}; the LAN must be the other port`);
  }

  const mode = fields.get("wan_mode");
  const modeName = mode?.value.toLowerCase();
  if (mode && modeName !== "dhcp" && modeName !== "static") {
    throw new BootTokenFileError(mode.line, "wan_mode", `wan_mode must be dhcp or static, got "${mode.value}"`);
  }
  if (modeName !== "static") {
    for (const key of STATIC_FIELDS) {
      const field = fields.get(key);
      if (field) throw new BootTokenFileError(field.line, key, `${key} is used only with wan_mode=static; add the line wan_mode=static or delete this line`);
    }
    if (modeName === "dhcp") changes.wanIPv4 = { mode: "dhcp" };
    return changes;
  }
  changes.wanIPv4 = parseStaticWan(fields, mode!.line);
  return changes;
}

/** Returns the value, or throws when the name could not be an interface name in a keyfile and the firewall. */
function parseInterfaceName(key: string, field: FieldValue): string {
  if (!INTERFACE_NAME.test(field.value)) {
    throw new BootTokenFileError(
      field.line,
      key,
      `${key} must be a network interface name of 1 to 15 letters, digits, "-", "_" or "." such as eth0 or eth1, got "${field.value}"`,
    );
  }
  return field.value;
}

function parseStaticWan(fields: ReadonlyMap<string, FieldValue>, modeLine: number): WanIPv4 {
  const need = (key: string, example: string): FieldValue => {
    const field = fields.get(key);
    if (!field) throw new BootTokenFileError(modeLine, key, `wan_mode=static needs ${key}; add a line such as ${key}=${example}`);
    return field;
  };
  const addressField = need("wan_address", "192.0.2.10/24");
  const gatewayField = need("wan_gateway", "192.0.2.1");

  const match = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(addressField.value);
  const address = match?.[1] ?? "";
  const prefixLength = Number(match?.[2]);
  // A /32 would need a gateway outside its own subnet, which a plain keyfile route cannot express.
  if (!match || !net.isIPv4(address) || prefixLength < 1 || prefixLength > 31) {
    throw new BootTokenFileError(
      addressField.line,
      "wan_address",
      `wan_address must be an IPv4 address with a prefix length from 1 to 31, such as 192.0.2.10/24, got "${addressField.value}"`,
    );
  }
  if (!isRoutableUnicast(address) || isNetworkOrBroadcast(address, prefixLength)) {
    throw new BootTokenFileError(addressField.line, "wan_address", `wan_address ${addressField.value} is not a usable host address; use the address your network administrator assigned`);
  }

  const gateway = gatewayField.value;
  if (!net.isIPv4(gateway) || !isRoutableUnicast(gateway)) {
    throw new BootTokenFileError(gatewayField.line, "wan_gateway", `wan_gateway must be the router's IPv4 address, such as 192.0.2.1, got "${gateway}"`);
  }
  if (gateway === address) {
    throw new BootTokenFileError(gatewayField.line, "wan_gateway", `wan_gateway ${gateway} is the adapter's own wan_address; use the router's address`);
  }
  if (!sameSubnet(address, gateway, prefixLength) || isNetworkOrBroadcast(gateway, prefixLength)) {
    throw new BootTokenFileError(
      gatewayField.line,
      "wan_gateway",
      `wan_gateway ${gateway} is not a host in the subnet of wan_address ${addressField.value}; correct the gateway or the prefix length`,
    );
  }

  const dnsField = fields.get("wan_dns");
  const dns = dnsField ? parseDnsList(dnsField) : [];
  return { mode: "static", address, prefixLength, gateway, dns };
}

function parseDnsList(field: FieldValue): string[] {
  const servers = field.value.split(",").map((s) => s.trim());
  for (const server of servers) {
    if (!net.isIPv4(server) || !isRoutableUnicast(server)) {
      throw new BootTokenFileError(
        field.line,
        "wan_dns",
        `wan_dns must be IPv4 addresses separated by commas, such as 192.0.2.53,198.51.100.53, got "${server}"; IPv6 DNS servers come from router advertisements`,
      );
    }
  }
  return servers;
}

function subnetMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

function sameSubnet(a: string, b: string, prefixLength: number): boolean {
  const mask = subnetMask(prefixLength);
  return ((ipv4ToNumber(a) & mask) >>> 0) === ((ipv4ToNumber(b) & mask) >>> 0);
}

/** True for the first and last address of a subnet of /30 or larger; a /31 has neither (RFC 3021). */
function isNetworkOrBroadcast(address: string, prefixLength: number): boolean {
  if (prefixLength > 30) return false;
  const mask = subnetMask(prefixLength);
  const host = (ipv4ToNumber(address) & ~mask) >>> 0;
  return host === 0 || host === (~mask >>> 0);
}
