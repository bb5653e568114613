// The files of the root file system that the network settings change, as
// the appliance overlay installs them. Each rewrite is a pure function of
// the current text and the settings, and gives the same text when applied
// twice, so a run that repeats a step after a power cut writes nothing new.
import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../../util/files.js";
import { ADAPTER_CONFIG_FIELDS } from "../config/schema.js";
import { setKeyfileValues } from "./keyfile.js";
import { NetworkChanges } from "./network-settings.js";

export interface RootFiles {
  wanProfile: string;
  lanProfile: string;
  firewall: string;
  adapterConfig: string;
}

export function rootFiles(rootDir: string): RootFiles {
  const connections = path.join(rootDir, "etc/NetworkManager/system-connections");
  return {
    wanProfile: path.join(connections, "cyphonic-wan.nmconnection"),
    lanProfile: path.join(connections, "cyphonic-lan.nmconnection"),
    firewall: path.join(rootDir, "etc/cyphonic/appliance.nft"),
    adapterConfig: path.join(rootDir, "etc/cyphonic/adapter.json"),
  };
}

/** Applies wan_interface and the wan_* IPv4 settings to the WAN keyfile. */
export function rewriteWanProfile(text: string, changes: NetworkChanges, file: string): string {
  let out = text;
  if (changes.wanInterface !== undefined) out = setKeyfileValues(out, "connection", { "interface-name": changes.wanInterface }, file);
  const ipv4 = changes.wanIPv4;
  if (ipv4?.mode === "dhcp") {
    out = setKeyfileValues(out, "ipv4", { method: "auto", address1: null, gateway: null, dns: null }, file);
  } else if (ipv4?.mode === "static") {
    out = setKeyfileValues(
      out,
      "ipv4",
      {
        method: "manual",
        address1: `${ipv4.address}/${ipv4.prefixLength}`,
        gateway: ipv4.gateway,
        // Keyfile lists end each item with ";".
        dns: ipv4.dns.length ? ipv4.dns.map((server) => `${server};`).join("") : null,
      },
      file,
    );
  }
  return out;
}

/** Applies lan_interface to the LAN keyfile. */
export function rewriteLanProfile(text: string, changes: NetworkChanges, file: string): string {
  if (changes.lanInterface === undefined) return text;
  return setKeyfileValues(text, "connection", { "interface-name": changes.lanInterface }, file);
}

/** Rewrites the `define WAN` and `define LAN` lines of the appliance firewall. */
export function rewriteFirewall(text: string, changes: NetworkChanges, file: string): string {
  let out = text;
  if (changes.wanInterface !== undefined) out = replaceOneLine(out, /^define WAN = .*$/m, `define WAN = "${changes.wanInterface}"`, file);
  if (changes.lanInterface !== undefined) out = replaceOneLine(out, /^define LAN = .*$/m, `define LAN = "${changes.lanInterface}"`, file);
  return out;
}

/**
 * Sets "lanInterface" in the adapter's JSON configuration file. The file is
 * written back with JSON.stringify (two-space indent, key order kept), the
 * form the overlay ships, so only that value's line changes. A file that
 * already names the interface is returned as it is, whatever its layout.
 */
export function rewriteAdapterConfig(text: string, changes: NetworkChanges, file: string): string {
  if (changes.lanInterface === undefined) return text;
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}); fix it, or install it again from the appliance overlay`);
  }
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new Error(`${file} must contain one JSON object; install it again from the appliance overlay`);
  }
  const config = document as Record<string, unknown>;
  const key: keyof typeof ADAPTER_CONFIG_FIELDS = "lanInterface";
  if (config[key] === changes.lanInterface) return text;
  config[key] = changes.lanInterface;
  return JSON.stringify(config, null, 2) + "\n";
}

function replaceOneLine(text: string, pattern: RegExp, line: string, file: string): string {
  const all = new RegExp(pattern.source, "gm");
  const count = [...text.matchAll(all)].length;
  if (count !== 1) {
    throw new Error(`${file} has ${count} lines matching ${pattern.source}, expected exactly 1; install the file again from the appliance overlay`);
  }
  return text.replace(pattern, () => line);
}

/** Reads a file that the overlay installs; a missing file means an incomplete image. */
export function readRootFile(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${file} is missing; install it from the appliance overlay (overlay/MANIFEST)`);
    throw err;
  }
}

/**
 * Replaces `file` with `rewrite(current text)` atomically, keeping its
 * permission bits. Writes nothing when the text does not change. Returns
 * whether it wrote.
 */
export function rewriteFile(file: string, rewrite: (text: string) => string): boolean {
  const text = readRootFile(file);
  const mode = fs.statSync(file).mode & 0o7777;
  const next = rewrite(text);
  if (next === text) return false;
  writeFileAtomic(file, next, mode);
  // The umask (0077 in cyphonic-firstboot.service) narrows the mode that the
  // new file is created with, so the old bits (0644 for the firewall and the
  // adapter configuration) are set again.
  fs.chmodSync(file, mode);
  const fd = fs.openSync(file, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}
