// The adapter's configuration file (/etc/cyphonic/adapter.json on the
// appliance): one JSON object whose keys are the settings of `cyphonic
// adapter`. Every key is optional in the file, because a command-line flag can
// supply or override it. docs/config.md describes each key.
import { z } from "zod";
import { parseEndpoint } from "../../protocol/endpoint.js";

/** pino's level names, fewest lines first. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Limits of the DHCP lease time in seconds. Devices renew at half the lease time. */
export const MIN_LEASE_SECONDS = 10;
export const MAX_LEASE_SECONDS = 7 * 86_400;

// The same rule as the LAN setup's check (adapter/lan/options.ts): Linux
// allows 15 bytes (IFNAMSIZ - 1), and the name goes into nftables rule text
// and /proc/sys paths, so quotes, "/" and whitespace are kept out.
const INTERFACE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

const interfaceName = z.string().regex(INTERFACE_NAME_PATTERN).refine((name) => name !== "." && name !== "..");
// A NUL byte would end the path early in every system call.
const filePath = z.string().min(1).refine((p) => !p.includes("\0"));
/** sun_path holds 108 bytes with the terminating NUL; libuv cuts a longer path short, so the socket would land elsewhere. */
const socketPath = filePath.refine((p) => Buffer.byteLength(p) <= 107);
const endpoint = z.string().refine((text) => {
  try {
    parseEndpoint(text);
    return true;
  } catch {
    return false;
  }
});

/** Keys of the file, with the flag that overrides each and the value it expects, for error messages and docs. */
export const ADAPTER_CONFIG_FIELDS = {
  stateDir: { flag: "--state", expected: "the state directory, a non-empty path such as /var/lib/cyphonic" },
  tokenFile: { flag: "--token-file", expected: "the provisioning token file, a non-empty path, or null for none" },
  lanInterface: { flag: "--lan", expected: "an interface name of 1 to 15 letters, digits, '_', '.' or '-', such as eth1" },
  port: { flag: "--port", expected: "a UDP port, a whole number from 0 to 65535 (0 picks any free port)" },
  tunName: { flag: "--tun", expected: "an interface name of 1 to 15 letters, digits, '_', '.' or '-', such as cyph0" },
  controlSocket: { flag: "--control", expected: "the control socket, a path of 1 to 107 bytes such as /run/cyphonic/node.sock" },
  dnsListen: { flag: "--dns-listen", expected: 'a non-empty array of "ADDRESS:PORT" strings such as ["127.0.0.1:53"]', item: "ADDRESS:PORT or [IPv6]:PORT with a port from 1 to 65535" },
  dnsUpstream: { flag: "--dns-upstream", expected: "ADDRESS:PORT or [IPv6]:PORT with a port from 1 to 65535, or null for none" },
  leaseSeconds: { flag: "--lease-seconds", expected: `a whole number of seconds from ${MIN_LEASE_SECONDS} to ${MAX_LEASE_SECONDS}` },
  ledRoot: { flag: "--led-root", expected: "the LED class directory, a non-empty path such as /sys/class/leds" },
  logLevel: { flag: "--log-level", expected: `one of ${LOG_LEVELS.join(", ")}` },
} as const satisfies Record<string, { flag: string; expected: string; item?: string }>;

export type AdapterConfigKey = keyof typeof ADAPTER_CONFIG_FIELDS;

export const ADAPTER_CONFIG_KEYS = Object.keys(ADAPTER_CONFIG_FIELDS) as AdapterConfigKey[];

/** The file's content. strictObject turns an unknown key into an error instead of ignoring a misspelt setting. */
export const adapterConfigFileSchema = z.strictObject({
  stateDir: filePath.optional(),
  tokenFile: filePath.nullable().optional(),
  lanInterface: interfaceName.optional(),
  port: z.int().min(0).max(65_535).optional(),
  tunName: interfaceName.optional(),
  controlSocket: socketPath.optional(),
  dnsListen: z.array(endpoint).min(1).optional(),
  dnsUpstream: endpoint.nullable().optional(),
  leaseSeconds: z.int().min(MIN_LEASE_SECONDS).max(MAX_LEASE_SECONDS).optional(),
  ledRoot: filePath.optional(),
  logLevel: z.enum(LOG_LEVELS).optional(),
});

export type AdapterConfigFile = z.infer<typeof adapterConfigFileSchema>;

/** Values for the keys that neither the file nor a flag sets. stateDir and lanInterface have none and are required. */
export const ADAPTER_CONFIG_DEFAULTS = {
  tokenFile: null,
  port: 7000,
  tunName: "cyph0",
  controlSocket: "/run/cyphonic/node.sock",
  dnsUpstream: null,
  leaseSeconds: 3600,
  ledRoot: "/sys/class/leds",
  logLevel: "info",
} as const satisfies Partial<AdapterConfigFile>;
