// Options of the LAN setup and their validation.
import { ipv4ToUint32, isHostInPrefix, normalizeMacAddress, parseIPv4Prefix, type IPv4Prefix } from "./addresses.js";

// Interface names go into nftables rule text and /proc/sys paths, so this
// pattern also keeps quotes, "/" and whitespace out of both.
const INTERFACE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

// IPv4 and TCP headers without options (RFC 791, RFC 9293), which an MSS excludes.
const IPV4_TCP_HEADER_BYTES = 40;

// A TCP peer that sends no MSS option gets segments of 536 bytes, which are
// 576-byte packets (RFC 9293 section 3.7.1), so a smaller tunnel MTU could not
// carry them. The tun driver caps the MTU at 65535.
const MIN_TUNNEL_MTU_BYTES = 576;
const MAX_TUNNEL_MTU_BYTES = 65_535;

export interface LanSetupOptions {
  /** LAN interface towards the general nodes, for example "eth1". It must exist when apply() runs. */
  lanInterface: string;
  /**
   * TUN device that carries the overlay, for example "cyph0". The rules match
   * it by name, so it may be created before or after apply().
   */
  tunInterface: string;
  /** The adapter's virtual IP, for example "100.64.0.3". General nodes use it as router and DNS server. */
  adapterVirtualIP: string;
  /** Overlay prefix that the TUN device routes, for example "100.64.0.0/16". */
  overlayCidr: string;
  /** MTU of the TUN device in bytes, for example 1420. TCP MSS options are clamped to this minus 40. */
  tunnelMtuBytes: number;
}

/** Validated options with the derived values. */
export interface LanConfig {
  lanInterface: string;
  tunInterface: string;
  adapterVirtualIP: string;
  overlay: IPv4Prefix;
  tunnelMtuBytes: number;
  /** Largest TCP MSS a SYN may carry across the tunnel: tunnelMtuBytes - 40. */
  tcpMssBytes: number;
}

export type LanSetupErrorCode = "INVALID_OPTIONS" | "INVALID_ARGUMENT" | "REMOVED" | "INTERFACE_NOT_FOUND";

/** Invalid options or arguments, or a call on a LanSetup after remove(). */
export class LanSetupError extends Error {
  override readonly name = "LanSetupError";

  constructor(
    readonly code: LanSetupErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function validateInterfaceName(field: string, name: unknown): string {
  if (typeof name !== "string" || !INTERFACE_NAME_PATTERN.test(name) || name === "." || name === "..") {
    throw new LanSetupError(
      "INVALID_OPTIONS",
      `invalid ${field} ${JSON.stringify(name)}. Use 1 to 15 characters from A-Z, a-z, 0-9, "_", "." and "-"`,
    );
  }
  return name;
}

/** Throws LanSetupError("INVALID_OPTIONS") naming the first invalid field. */
export function validateLanSetupOptions(options: LanSetupOptions): LanConfig {
  const lanInterface = validateInterfaceName("lanInterface", options.lanInterface);
  const tunInterface = validateInterfaceName("tunInterface", options.tunInterface);
  if (lanInterface === tunInterface) {
    throw new LanSetupError("INVALID_OPTIONS", `lanInterface and tunInterface are both ${lanInterface}. Use two different interfaces`);
  }

  const overlay = typeof options.overlayCidr === "string" ? parseIPv4Prefix(options.overlayCidr) : null;
  if (!overlay) {
    throw new LanSetupError(
      "INVALID_OPTIONS",
      `invalid overlayCidr ${JSON.stringify(options.overlayCidr)}. Use an IPv4 prefix with no host bits set, for example "100.64.0.0/16"`,
    );
  }

  const adapterVirtualIP = options.adapterVirtualIP;
  if (typeof adapterVirtualIP !== "string" || !isHostInPrefix(overlay, adapterVirtualIP)) {
    throw new LanSetupError(
      "INVALID_OPTIONS",
      `invalid adapterVirtualIP ${JSON.stringify(adapterVirtualIP)}. Use a host address inside ${overlay.cidr}`,
    );
  }

  const tunnelMtuBytes = options.tunnelMtuBytes;
  if (!Number.isInteger(tunnelMtuBytes) || tunnelMtuBytes < MIN_TUNNEL_MTU_BYTES || tunnelMtuBytes > MAX_TUNNEL_MTU_BYTES) {
    throw new LanSetupError(
      "INVALID_OPTIONS",
      `invalid tunnelMtuBytes ${tunnelMtuBytes}. Use an integer from ${MIN_TUNNEL_MTU_BYTES} to ${MAX_TUNNEL_MTU_BYTES}`,
    );
  }

  return {
    lanInterface,
    tunInterface,
    adapterVirtualIP,
    overlay,
    tunnelMtuBytes,
    tcpMssBytes: tunnelMtuBytes - IPV4_TCP_HEADER_BYTES,
  };
}

/**
 * Returns `virtualIP` when a general node may use it: a host address inside
 * the overlay prefix other than the adapter's own virtual IP.
 * Throws LanSetupError("INVALID_ARGUMENT") otherwise.
 */
export function validateGeneralNodeIP(config: LanConfig, virtualIP: unknown): string {
  if (typeof virtualIP !== "string" || !isHostInPrefix(config.overlay, virtualIP)) {
    throw new LanSetupError(
      "INVALID_ARGUMENT",
      `invalid general node virtual IP ${JSON.stringify(virtualIP)}. Use a host address inside ${config.overlay.cidr}`,
    );
  }
  if (ipv4ToUint32(virtualIP) === ipv4ToUint32(config.adapterVirtualIP)) {
    throw new LanSetupError("INVALID_ARGUMENT", `${virtualIP} is the adapter's own virtual IP, so no general node can use it`);
  }
  return virtualIP;
}

/** Returns the MAC address normalized, or throws LanSetupError("INVALID_ARGUMENT"). */
export function validateLeaseMac(mac: unknown): string {
  const normalized = typeof mac === "string" ? normalizeMacAddress(mac) : null;
  if (!normalized) {
    throw new LanSetupError(
      "INVALID_ARGUMENT",
      `invalid MAC address ${JSON.stringify(mac)}. Use a unicast address such as 02:00:5e:10:00:07, other than 00:00:00:00:00:00`,
    );
  }
  return normalized;
}
