// Reads the adapter's configuration file, validates it and the command-line
// flags with the same schema, and merges them. A flag overrides the file's
// key, and a key that neither sets takes its default.
import fs from "node:fs";
import { z } from "zod";
import { Endpoint, parseEndpoint } from "../../protocol/endpoint.js";
import {
  ADAPTER_CONFIG_DEFAULTS,
  ADAPTER_CONFIG_FIELDS,
  ADAPTER_CONFIG_KEYS,
  AdapterConfigFile,
  AdapterConfigKey,
  LogLevel,
  adapterConfigFileSchema,
} from "./schema.js";

/** An invalid configuration file or flag. The message names the file, the key or flag, and the fix. */
export class AdapterConfigError extends Error {
  constructor(
    message: string,
    /** The configuration file, or null for a flag. */
    readonly file: string | null,
    /** The key or flag at fault, or null when the file as a whole is. */
    readonly field: string | null,
  ) {
    super(message);
    this.name = "AdapterConfigError";
  }
}

/** The adapter's settings after merging: what the node daemon, the adapter and the status LEDs need. */
export interface AdapterSettings {
  stateDir: string;
  tokenFile: string | null;
  lanInterface: string;
  port: number;
  tunName: string;
  controlSocket: string;
  dnsListen: Endpoint[] | "virtual-ip";
  dnsUpstream: Endpoint | null;
  leaseSeconds: number;
  ledRoot: string;
  logLevel: LogLevel;
}

/** Flag values as node:util parseArgs returns them. */
export interface AdapterFlagValues {
  state?: string;
  "token-file"?: string;
  lan?: string;
  port?: string;
  tun?: string;
  control?: string;
  "dns-listen"?: string[];
  "dns-upstream"?: string;
  "lease-seconds"?: string;
  "led-root"?: string;
  "log-level"?: string;
}

/** Reads and validates the configuration file. Throws AdapterConfigError. */
export function readAdapterConfigFile(file: string): AdapterConfigFile {
  let text: string;
  try {
    text = readBounded(file);
  } catch (err) {
    if (err instanceof AdapterConfigError) throw err;
    throw new AdapterConfigError(`${file}: cannot read the configuration file: ${(err as Error).message}; pass the path of an existing file to --config`, file, null);
  }
  return parseAdapterConfigText(text, file);
}

/** A real configuration is under 1 KiB; the limit keeps a wrong path (/dev/zero, a log file) from stalling the start. */
const MAX_CONFIG_BYTES = 64 * 1024;

function readBounded(file: string): string {
  const fd = fs.openSync(file, "r");
  try {
    const buffer = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let length = 0;
    for (;;) {
      const n = fs.readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > MAX_CONFIG_BYTES) {
        throw new AdapterConfigError(`${file}: the configuration file is larger than ${MAX_CONFIG_BYTES} bytes; pass the adapter's JSON configuration to --config`, file, null);
      }
    }
    return buffer.toString("utf8", 0, length);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses and validates the text of a configuration file. Throws AdapterConfigError. */
export function parseAdapterConfigText(text: string, file: string): AdapterConfigFile {
  let document: unknown;
  try {
    // An editor's byte order mark is not JSON, and Node's own require() skips it too.
    document = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (err) {
    throw new AdapterConfigError(
      `${file}: invalid JSON${lineOfError(text, err as Error)}: ${(err as Error).message}; check the quotes and commas (JSON allows no comments and no comma after the last entry)`,
      file,
      null,
    );
  }
  const parsed = adapterConfigFileSchema.safeParse(document);
  if (!parsed.success) throw fileIssueError(file, parsed.error.issues[0]!, document);
  return parsed.data;
}

/** Converts and validates the flags with the file's schema. Throws AdapterConfigError naming the flag. */
export function parseAdapterFlags(values: AdapterFlagValues): AdapterConfigFile {
  const candidate: Record<string, unknown> = {
    stateDir: values.state,
    tokenFile: values["token-file"],
    lanInterface: values.lan,
    port: wholeNumber(values.port),
    tunName: values.tun,
    controlSocket: values.control,
    dnsListen: values["dns-listen"],
    dnsUpstream: values["dns-upstream"],
    leaseSeconds: wholeNumber(values["lease-seconds"]),
    ledRoot: values["led-root"],
    logLevel: values["log-level"],
  };
  for (const key of Object.keys(candidate)) if (candidate[key] === undefined) delete candidate[key];
  const parsed = adapterConfigFileSchema.safeParse(candidate);
  if (!parsed.success) throw flagIssueError(parsed.error.issues[0]!, candidate);
  return parsed.data;
}

/**
 * Merges the file (null without --config) and the flags: a flag wins over the
 * file, and the file over the default. Throws AdapterConfigError when a
 * required setting is missing from both.
 */
export function mergeAdapterConfig(fromFile: AdapterConfigFile | null, file: string | null, fromFlags: AdapterConfigFile): AdapterSettings {
  const merged: AdapterConfigFile = { ...ADAPTER_CONFIG_DEFAULTS, ...definedEntries(fromFile ?? {}), ...definedEntries(fromFlags) };
  const stateDir = merged.stateDir ?? missing("stateDir", "DIR", file, "the state directory: identity, keys and leases");
  const lanInterface = merged.lanInterface ?? missing("lanInterface", "IFACE", file, "the NIC the general nodes are plugged into");
  return {
    stateDir,
    tokenFile: merged.tokenFile ?? null,
    lanInterface,
    port: merged.port ?? ADAPTER_CONFIG_DEFAULTS.port,
    tunName: merged.tunName ?? ADAPTER_CONFIG_DEFAULTS.tunName,
    controlSocket: merged.controlSocket ?? ADAPTER_CONFIG_DEFAULTS.controlSocket,
    dnsListen: merged.dnsListen?.map(parseEndpoint) ?? "virtual-ip",
    dnsUpstream: merged.dnsUpstream ? parseEndpoint(merged.dnsUpstream) : null,
    leaseSeconds: merged.leaseSeconds ?? ADAPTER_CONFIG_DEFAULTS.leaseSeconds,
    ledRoot: merged.ledRoot ?? ADAPTER_CONFIG_DEFAULTS.ledRoot,
    logLevel: merged.logLevel ?? ADAPTER_CONFIG_DEFAULTS.logLevel,
  };
}

/** Returns " at line L, column C" for a JSON.parse error that names a position (Node.js 20 and later do), else "". */
function lineOfError(text: string, err: Error): string {
  const position = /at position (\d+)/.exec(err.message)?.[1];
  if (position === undefined) return "";
  const before = text.slice(0, Number(position)).split("\n");
  return ` at line ${before.length}, column ${before.at(-1)!.length + 1}`;
}

function definedEntries(config: AdapterConfigFile): AdapterConfigFile {
  return Object.fromEntries(Object.entries(config).filter(([, value]) => value !== undefined)) as AdapterConfigFile;
}

function missing(key: AdapterConfigKey, metavariable: string, file: string | null, what: string): never {
  const flag = ADAPTER_CONFIG_FIELDS[key].flag;
  if (file) throw new AdapterConfigError(`${file}: "${key}" is missing (${what}); set it there or pass ${flag} ${metavariable}`, file, key);
  throw new AdapterConfigError(`${flag} ${metavariable} is required (${what}); pass it, or set "${key}" in a --config file`, null, flag);
}

/** Keeps a flag's text when it is not all digits, so the error shows what was typed. */
function wholeNumber(text: string | undefined): number | string | undefined {
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : text;
}

function fileIssueError(file: string, issue: z.core.$ZodIssue, document: unknown): AdapterConfigError {
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0]!;
    const suggestion = closestKey(key);
    const hint = suggestion ? `did you mean "${suggestion}"? ` : "";
    return new AdapterConfigError(`${file}: unknown key ${JSON.stringify(key)}; ${hint}remove it, the valid keys are ${ADAPTER_CONFIG_KEYS.join(", ")}`, file, key);
  }
  const key = issue.path[0];
  if (key === undefined) {
    return new AdapterConfigError(`${file}: expected one JSON object such as {"lanInterface": "eth1"}, got ${describeValue(document)}`, file, null);
  }
  const field = ADAPTER_CONFIG_FIELDS[key as AdapterConfigKey];
  const value = valueAt(document, issue.path);
  const label = issue.path.length > 1 ? `"${String(key)}"[${String(issue.path[1])}]` : `"${String(key)}"`;
  const expected = issue.path.length > 1 && "item" in field ? field.item : field.expected;
  return new AdapterConfigError(`${file}: ${label} must be ${expected}, got ${describeValue(value)}`, file, String(key));
}

function flagIssueError(issue: z.core.$ZodIssue, candidate: Record<string, unknown>): AdapterConfigError {
  const key = issue.path[0] as AdapterConfigKey;
  const field = ADAPTER_CONFIG_FIELDS[key];
  const value = valueAt(candidate, issue.path);
  const expected = "item" in field ? field.item : field.expected;
  return new AdapterConfigError(`${field.flag} must be ${expected}, got ${describeValue(value)}`, null, field.flag);
}

function valueAt(document: unknown, keys: readonly PropertyKey[]): unknown {
  let value = document;
  for (const key of keys) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  // JSON.parse reads 1e999 as Infinity, which JSON.stringify would show as null.
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (Array.isArray(value)) {
    try {
      return `an array ${truncate(JSON.stringify(value))}`;
    } catch {
      // Nesting deep enough to overflow the stack.
      return `an array of ${value.length} entries`;
    }
  }
  if (value !== null && typeof value === "object") return "an object";
  return truncate(JSON.stringify(value));
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Returns the valid key within edit distance 2 of `key`, case ignored, for a misspelling. */
function closestKey(key: string): AdapterConfigKey | null {
  let best: { key: AdapterConfigKey; distance: number } | null = null;
  for (const candidate of ADAPTER_CONFIG_KEYS) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance <= 2 && (best === null || distance < best.distance)) best = { key: candidate, distance };
  }
  return best?.key ?? null;
}

/** Levenshtein distance: insertions, deletions and substitutions of one character each cost 1. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}
