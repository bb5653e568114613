// The kernel parameters the LAN setup changes, and the record of their
// original values that lets remove() put them back, also after a crash.
import type { Logger } from "../../util/log.js";
import { LanSetupError } from "./options.js";
import { readSysctl, SysctlError, writeSysctl } from "./sysctl.js";

/**
 * One parameter and the value the adapter needs. The key is "ip_forward" for
 * net.ipv4.ip_forward, or "<interface>/<name>" for net.ipv4.conf.<interface>.<name>.
 */
export interface SysctlSetting {
  key: string;
  value: string;
}

/** Original values by key, for the parameters whose value apply() changed. */
export type SavedSysctls = ReadonlyMap<string, string>;

const PER_INTERFACE_NAMES = ["proxy_arp", "rp_filter", "arp_ignore"] as const;
const SAVED_KEY_PATTERN = new RegExp(`^(ip_forward|[A-Za-z0-9_.-]{1,15}/(${PER_INTERFACE_NAMES.join("|")}))$`);
const SAVED_VALUE_PATTERN = /^[0-9]{1,2}$/;

/**
 * Returns the settings for `lanInterface`:
 * - ip_forward=1, because the adapter routes between the LAN and the TUN device.
 * - proxy_arp=1, so the adapter replies to ARP requests for overlay addresses
 *   with its own MAC (RFC 1027). The kernel replies only when the route to the
 *   requested address leaves through another interface, here the TUN device.
 * - rp_filter=1, the strict reverse-path check of RFC 3704 section 3.2. Every
 *   general node has a /32 route on the LAN, so the kernel drops packets whose
 *   source has no such route, and proxy ARP ignores requests from them. The
 *   kernel skips the check for source 0.0.0.0, so DHCP discovery still
 *   arrives. The kernel uses the larger of conf/all and conf/<lan>, so
 *   all.rp_filter=2 makes the check loose. Then only the nftables
 *   (MAC, IP) check filters, and it is the anti-spoofing check in any case.
 * - arp_ignore=1, so the kernel replies to ARP requests only for addresses
 *   assigned to the LAN interface, and the LAN does not learn the adapter's
 *   underlay addresses. Proxy ARP replies are not affected.
 */
export function lanSysctlSettings(lanInterface: string): SysctlSetting[] {
  return [
    { key: "ip_forward", value: "1" },
    { key: `${lanInterface}/proxy_arp`, value: "1" },
    { key: `${lanInterface}/rp_filter`, value: "1" },
    { key: `${lanInterface}/arp_ignore`, value: "1" },
  ];
}

function keySegments(key: string): string[] {
  if (key === "ip_forward") return ["net", "ipv4", "ip_forward"];
  const [interfaceName, name] = key.split("/") as [string, string];
  return ["net", "ipv4", "conf", interfaceName, name];
}

/** Formats saved values as "key=value" tokens separated by spaces, for the nftables table comment. */
export function formatSavedSysctls(saved: SavedSysctls): string {
  return [...saved].map(([key, value]) => `${key}=${value}`).join(" ");
}

/**
 * Parses the output of formatSavedSysctls. Skips tokens that do not name a
 * parameter this module sets, so a changed comment cannot make remove()
 * write to any other /proc/sys file.
 */
export function parseSavedSysctls(text: string): Map<string, string> {
  const saved = new Map<string, string>();
  for (const token of text.split(" ")) {
    const separator = token.indexOf("=");
    if (separator < 0) continue;
    const key = token.slice(0, separator);
    const value = token.slice(separator + 1);
    if (SAVED_KEY_PATTERN.test(key) && SAVED_VALUE_PATTERN.test(value)) saved.set(key, value);
  }
  return saved;
}

/**
 * Returns the original values to keep: those in `previous` (saved by an
 * earlier apply() whose remove() never ran) and the current values of
 * settings that differ from the required value. Rejects with
 * LanSetupError("INTERFACE_NOT_FOUND") when the interface does not exist.
 */
export async function readOriginalValues(settings: readonly SysctlSetting[], previous: SavedSysctls): Promise<Map<string, string>> {
  const saved = new Map(previous);
  for (const setting of settings) {
    if (saved.has(setting.key)) continue;
    const current = await readSetting(setting.key);
    if (current !== setting.value) saved.set(setting.key, current);
  }
  return saved;
}

async function readSetting(key: string): Promise<string> {
  try {
    return await readSysctl(keySegments(key));
  } catch (err) {
    if (err instanceof SysctlError && err.code === "ENOENT" && key.includes("/")) {
      const interfaceName = key.split("/")[0];
      throw new LanSetupError("INTERFACE_NOT_FOUND", `interface ${interfaceName} not found in this network namespace (${err.path} is missing)`, {
        cause: err,
      });
    }
    throw err;
  }
}

/** Writes every setting's required value. */
export async function writeSettings(settings: readonly SysctlSetting[]): Promise<void> {
  for (const setting of settings) {
    await writeSysctl(keySegments(setting.key), setting.value);
  }
}

/**
 * Writes the saved original values back. Skips parameters of an interface
 * that no longer exists, because the kernel dropped them with it. Tries every
 * parameter and then rejects with the first error, if any.
 */
export async function restoreOriginalValues(saved: SavedSysctls, log: Logger): Promise<void> {
  let firstError: unknown;
  for (const [key, value] of saved) {
    try {
      await writeSysctl(keySegments(key), value);
    } catch (err) {
      if (err instanceof SysctlError && err.code === "ENOENT") {
        log.warn({ reason: "interface_gone", err }, "original sysctl value not restored because its interface no longer exists");
        continue;
      }
      log.error({ reason: "sysctl_restore_failed", err }, "restoring an original sysctl value failed");
      firstError ??= err;
    }
  }
  if (firstError !== undefined) throw firstError;
}
