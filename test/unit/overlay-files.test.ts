// Checks the appliance overlay (overlay/) with the tools that read the files
// on the appliance: systemd-analyze, systemctl --root, systemd-sysusers,
// systemd-sysctl, nft and ip. Every command that touches network state runs
// inside a network namespace that the test creates and deletes.
//
// systemd-analyze verify needs the units' ExecStart binaries and the units
// they depend on. The tests build a temporary root: a copy of the host's
// systemd units (targets and system services), the overlay installed from
// overlay/MANIFEST, and stub executables at /usr/bin/node and /usr/sbin/nft.
// `--root=` makes systemd-analyze and systemctl resolve every path inside it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { validateLanSetupOptions } from "../../firmware/src/adapter/lan/options.js";
import { AdapterConfigFile, readAdapterConfigFile } from "../../firmware/src/appliance/config/index.js";
import { buildLanRuleset, tableComment } from "../../firmware/src/adapter/lan/ruleset.js";
import { parseTokenFile } from "../../firmware/src/node/token-file.js";

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const OVERLAY = path.join(REPO_ROOT, "overlay");
const FIXTURES = path.join(__dirname, "fixtures");
// Files in overlay/ that describe the overlay and are not installed.
const OVERLAY_DOCUMENTS = new Set(["README.md", "MANIFEST"]);

const ADAPTER_UNIT = "/usr/lib/systemd/system/cyphonic-adapter.service";
const FIRSTBOOT_UNIT = "/usr/lib/systemd/system/cyphonic-firstboot.service";
const FIREWALL_UNIT = "/usr/lib/systemd/system/cyphonic-firewall.service";
const CLOUD_UNIT = "/usr/lib/systemd/system/cyphonic-cloud.service";
const UNITS = [ADAPTER_UNIT, FIRSTBOOT_UNIT, FIREWALL_UNIT, CLOUD_UNIT];
const RULESET = "/etc/cyphonic/appliance.nft";
const SYSCTL_FILE = "/etc/sysctl.d/60-cyphonic.conf";
const ADAPTER_CONFIG = "/etc/cyphonic/adapter.json";
const WAN_KEYFILE = "/etc/NetworkManager/system-connections/cyphonic-wan.nmconnection";
const LAN_KEYFILE = "/etc/NetworkManager/system-connections/cyphonic-lan.nmconnection";
const NM_CONF = "/etc/NetworkManager/conf.d/60-cyphonic.conf";
const TOKEN_TEMPLATE = "/boot/firmware/cyphonic-token.txt.example";
const APPLIANCE_TABLE = "cyphonic_appliance";

// systemd 254 added RestartSteps= and RestartMaxDelaySec=. Older versions
// warn that the keys are unknown and ignore them.
const RESTART_BACKOFF_KEYS = ["RestartSteps", "RestartMaxDelaySec"];
const RESTART_BACKOFF_MIN_SYSTEMD = 254;

// Ranks of `systemd-analyze security` that mean an exposure level below 5.0.
const ACCEPTED_EXPOSURE_RANKS = new Set(["PERFECT", "SAFE", "OK"]);

// The unprivileged user the capability tests run as (nobody on Debian).
const UNPRIVILEGED_UID = 65534;

// ---------------------------------------------------------------------------
// Commands

interface CommandResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command and resolves with its exit status and output, also on failure. */
function run(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd: REPO_ROOT, timeout: options.timeoutMs ?? 30_000, encoding: "utf8" }, (err, stdout, stderr) => {
      let exitCode: number | null = 0;
      if (err) exitCode = typeof err.code === "number" ? err.code : null;
      resolve({ exitCode, stdout, stderr });
    });
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(options.input ?? "");
  });
}

/** Runs a command, asserts exit status 0 and returns its standard output. */
async function mustRun(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const result = await run(file, args, options);
  assert.equal(result.exitCode, 0, `${file} ${args.join(" ")} failed with exit status ${result.exitCode}:\n${result.stderr}${result.stdout}`);
  return result.stdout;
}

/** Returns the path of an executable found in PATH or in the sbin directories, or null. */
function findExecutable(name: string, extraDirectories: readonly string[] = []): string | null {
  const directories = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", ...extraDirectories];
  for (const directory of directories) {
    if (!directory) continue;
    const candidate = path.join(directory, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      continue;
    }
  }
  return null;
}

/** Returns the executable's path, or fails the test naming the Debian package to install. */
function requireExecutable(name: string, debianPackage: string, extraDirectories: readonly string[] = []): string {
  const found = findExecutable(name, extraDirectories);
  assert.ok(found, `${name} not found in PATH. Install the Debian package ${debianPackage}`);
  return found;
}

function namespaceSkipReason(): string | false {
  if (process.getuid?.() !== 0) return "needs root to create network namespaces";
  return false;
}

// ---------------------------------------------------------------------------
// Overlay files

interface ManifestEntry {
  /** Octal mode such as "0600", or "-" where the file system sets it. */
  mode: string;
  /** "user:group", or "-". */
  owner: string;
  /** Absolute destination path on the appliance. */
  destination: string;
}

function readManifest(): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  const text = fs.readFileSync(path.join(OVERLAY, "MANIFEST"), "utf8");
  text.split("\n").forEach((line, index) => {
    if (!line.trim() || line.startsWith("#")) return;
    const fields = line.trim().split(/\s+/);
    assert.equal(fields.length, 3, `MANIFEST line ${index + 1} has ${fields.length} fields, expected MODE OWNER:GROUP PATH: ${line}`);
    const [mode, owner, destination] = fields as [string, string, string];
    entries.push({ mode, owner, destination });
  });
  return entries;
}

/** Returns the source file of a destination path. */
function overlayPath(destination: string): string {
  return path.join(OVERLAY, destination);
}

function readOverlay(destination: string): string {
  return fs.readFileSync(overlayPath(destination), "utf8");
}

/** Lists files under overlay/ as destination paths, without the overlay's own documents. */
function listOverlayFiles(directory = OVERLAY): string[] {
  const files: string[] = [];
  for (const entry of fs.readdirSync(directory, { withFileTypes: true })) {
    const full = path.join(directory, entry.name);
    if (entry.isDirectory()) {
      files.push(...listOverlayFiles(full));
    } else if (!(directory === OVERLAY && OVERLAY_DOCUMENTS.has(entry.name))) {
      files.push(`/${path.relative(OVERLAY, full)}`);
    }
  }
  return files.sort();
}

/**
 * Parses INI text (systemd units, NetworkManager keyfiles) into sections of
 * keys with every value they were given, in order. systemd allows a key more
 * than once, so values are lists.
 */
function parseIni(text: string, file: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) return;
    assert.ok(!line.endsWith("\\"), `${file}:${index + 1}: line continuations are not expected`);
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      const name = header[1] as string;
      assert.ok(!sections.has(name), `${file}:${index + 1}: section [${name}] appears twice`);
      current = new Map();
      sections.set(name, current);
      return;
    }
    const separator = line.indexOf("=");
    assert.ok(separator > 0, `${file}:${index + 1}: expected KEY=VALUE, got ${line}`);
    assert.ok(current, `${file}:${index + 1}: key before the first section`);
    const key = line.slice(0, separator).trim();
    const values = current.get(key) ?? [];
    values.push(line.slice(separator + 1).trim());
    current.set(key, values);
  });
  return sections;
}

/** Returns every value of a key, or [] when the key or its section is missing. */
function iniValues(ini: Map<string, Map<string, string[]>>, section: string, key: string): string[] {
  return ini.get(section)?.get(key) ?? [];
}

/** Returns the single value of a key and asserts that the key is set exactly once. */
function iniValue(ini: Map<string, Map<string, string[]>>, section: string, key: string): string {
  const values = iniValues(ini, section, key);
  assert.equal(values.length, 1, `[${section}] ${key} is set ${values.length} times, expected once`);
  return values[0] as string;
}

/** Returns the words of every value of a space-separated list key, such as AmbientCapabilities. */
function iniWords(ini: Map<string, Map<string, string[]>>, section: string, key: string): string[] {
  return iniValues(ini, section, key).flatMap((value) => value.split(/\s+/).filter(Boolean));
}

function readUnit(destination: string): Map<string, Map<string, string[]>> {
  return parseIni(readOverlay(destination), destination);
}

/** Returns the value that follows `option` in a command line, such as ExecStart. */
function optionValue(commandLine: string, option: string): string {
  const words = commandLine.split(/\s+/);
  const index = words.indexOf(option);
  assert.ok(index >= 0, `${option} missing in: ${commandLine}`);
  assert.ok(index + 1 < words.length, `${option} has no value in: ${commandLine}`);
  return words[index + 1] as string;
}

/** Returns the `define NAME = VALUE` variables of an nftables file, with quotes removed. */
function nftDefines(text: string): Map<string, string> {
  const defines = new Map<string, string>();
  for (const match of text.matchAll(/^define\s+(\w+)\s*=\s*(.+?)\s*$/gm)) {
    defines.set(match[1] as string, (match[2] as string).replace(/^"(.*)"$/, "$1"));
  }
  return defines;
}

/** Parses KEY=VALUE lines of an environment file or a sysctl.d file, skipping comments. */
function parseAssignments(text: string, separatorPattern: RegExp): Map<string, string> {
  const values = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const match = separatorPattern.exec(line);
    assert.ok(match, `expected an assignment, got ${line}`);
    values.set(match[1] as string, match[2] as string);
  }
  return values;
}

function readSysctlSettings(): Map<string, string> {
  return parseAssignments(readOverlay(SYSCTL_FILE), /^([^=\s]+)\s*=\s*(.*)$/);
}

/** Reads the overlay's adapter.json with the adapter's own loader, so a key it would reject fails here too. */
function readAdapterConfig(): AdapterConfigFile {
  return readAdapterConfigFile(overlayPath(ADAPTER_CONFIG));
}

/** Returns the Linux capability names of a unit key, for example ["net_admin"], for setpriv. */
function capabilityNames(words: readonly string[]): string[] {
  return words.map((word) => {
    assert.match(word, /^CAP_[A-Z_]+$/, `unexpected capability ${word}`);
    return word.slice("CAP_".length).toLowerCase();
  });
}

// ---------------------------------------------------------------------------
// Temporary root with the overlay installed

/** Returns the directory with the host's systemd system units. */
function hostUnitDirectory(): string {
  for (const candidate of ["/usr/lib/systemd/system", "/lib/systemd/system"]) {
    if (fs.existsSync(path.join(candidate, "multi-user.target"))) return candidate;
  }
  assert.fail("no systemd unit directory with multi-user.target found. Install the Debian package systemd");
}

/** Installs the overlay into `root` from the manifest, with the modes it lists. */
function installOverlay(root: string): void {
  for (const entry of readManifest()) {
    const target = path.join(root, entry.destination);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(overlayPath(entry.destination), target);
    if (entry.mode !== "-") fs.chmodSync(target, Number.parseInt(entry.mode, 8));
  }
}

/** Writes an executable that exits 0, standing in for a binary the units start. */
function writeStubExecutable(root: string, binary: string): void {
  const target = path.join(root, binary);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
}

/** Returns the absolute binaries that the units' Exec* lines start. */
function unitBinaries(): Set<string> {
  const binaries = new Set<string>();
  for (const unit of UNITS) {
    const service = readUnit(unit).get("Service");
    for (const [key, values] of service ?? []) {
      if (!key.startsWith("Exec")) continue;
      for (const value of values) binaries.add(value.split(/\s+/)[0] as string);
    }
  }
  return binaries;
}

/** Creates a temporary root with host units, the overlay and stub binaries. */
function buildTemporaryRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "cyov-root-"));
  fs.cpSync(hostUnitDirectory(), path.join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
  installOverlay(root);
  for (const binary of unitBinaries()) writeStubExecutable(root, binary);
  fs.mkdirSync(path.join(root, "etc/systemd/system"), { recursive: true });
  return root;
}

async function systemdVersion(): Promise<number> {
  const output = await mustRun(requireExecutable("systemd-analyze", "systemd"), ["--version"]);
  const match = /^systemd (\d+)/.exec(output);
  assert.ok(match, `unexpected systemd-analyze --version output: ${output}`);
  return Number(match[1]);
}

// ---------------------------------------------------------------------------
// Network namespaces

/** A network namespace that the test created and deletes. */
class Namespace {
  private constructor(readonly name: string) {}

  static async create(suffix = ""): Promise<Namespace> {
    const name = `cyov${randomBytes(4).toString("hex")}${suffix}`;
    await mustRun("ip", ["netns", "add", name]);
    const namespace = new Namespace(name);
    await namespace.mustExec(["ip", "link", "set", "lo", "up"]);
    return namespace;
  }

  exec(args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
    return run("ip", ["netns", "exec", this.name, ...args], options);
  }

  mustExec(args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    return mustRun("ip", ["netns", "exec", this.name, ...args], options);
  }

  /** Reads /proc/sys files as seen from inside the namespace, keyed by path. */
  async readProcSys(files: readonly string[]): Promise<Map<string, string>> {
    const output = await this.mustExec(["grep", "-H", "", ...files]);
    const values = new Map<string, string>();
    for (const line of output.trim().split("\n")) {
      const separator = line.lastIndexOf(":");
      values.set(line.slice(0, separator), line.slice(separator + 1));
    }
    return values;
  }

  async delete(): Promise<void> {
    const deleted = await run("ip", ["netns", "delete", this.name]);
    assert.equal(deleted.exitCode, 0, `ip netns delete ${this.name} failed: ${deleted.stderr}`);
  }
}

/** Deletes every namespace in the list, also when one deletion fails, then raises the first error. */
async function deleteNamespaces(namespaces: Namespace[]): Promise<void> {
  let firstError: unknown;
  for (const namespace of namespaces.splice(0)) {
    try {
      await namespace.delete();
    } catch (err) {
      firstError ??= err;
    }
  }
  if (firstError !== undefined) throw firstError;
}

/** Returns the /proc/sys path of a dotted sysctl key. Keys here contain no interface names with dots. */
function procSysPath(key: string): string {
  return path.join("/proc/sys", ...key.split("."));
}

/** Builds the adapter's own nftables ruleset, as the daemon does at start. */
function adapterRuleset(lanInterface: string, tunInterface: string): string {
  const config = validateLanSetupOptions({
    lanInterface,
    tunInterface,
    adapterVirtualIP: "100.64.0.3",
    overlayCidr: "100.64.0.0/16",
    tunnelMtuBytes: 1420,
  });
  return buildLanRuleset(config, tableComment("ip_forward=0"));
}

interface NftRule {
  chain: string;
  comment?: string;
  expr: Array<Record<string, unknown>>;
}

interface NftListing {
  nftables: Array<{
    table?: { family: string; name: string };
    chain?: { table: string; name: string; hook?: string; policy?: string; prio?: number };
    rule?: NftRule & { table: string };
    set?: { table: string; name: string; elem?: unknown[] };
  }>;
}

async function listRuleset(namespace: Namespace): Promise<NftListing> {
  return JSON.parse(await namespace.mustExec(["nft", "-j", "list", "ruleset"])) as NftListing;
}

/** Returns the packet count of the counter in the rule with `comment`. */
function ruleCounter(listing: NftListing, chain: string, comment: string): number {
  const rule = listing.nftables.find((item) => item.rule?.table === APPLIANCE_TABLE && item.rule.chain === chain && item.rule.comment === comment)?.rule;
  assert.ok(rule, `no rule "${comment}" in chain ${chain} of table ${APPLIANCE_TABLE}`);
  const counter = rule.expr.find((expression) => "counter" in expression)?.counter as { packets?: unknown } | undefined;
  assert.equal(typeof counter?.packets, "number", `rule "${comment}" has no counter`);
  return counter!.packets as number;
}

// ---------------------------------------------------------------------------
// Tests without root: file contents and the systemd tools on a temporary root

test("manifest lists every overlay file", () => {
  const manifest = readManifest();
  const destinations = manifest.map((entry) => entry.destination);
  assert.deepEqual([...destinations].sort(), listOverlayFiles());
  assert.equal(new Set(destinations).size, destinations.length, "MANIFEST lists a path twice");
  for (const entry of manifest) {
    if (entry.destination.startsWith("/boot/firmware/")) {
      assert.equal(entry.mode, "-", `${entry.destination} is on the FAT partition, which has no modes`);
      assert.equal(entry.owner, "-", `${entry.destination} is on the FAT partition, which has no owners`);
      continue;
    }
    assert.match(entry.mode, /^0[0-7]{3}$/, `${entry.destination}: invalid mode ${entry.mode}`);
    assert.equal(entry.owner, "root:root", `${entry.destination}: owner`);
    const groupOrOtherWritable = Number.parseInt(entry.mode, 8) & 0o022;
    assert.equal(groupOrOtherWritable, 0, `${entry.destination}: mode ${entry.mode} lets others write`);
  }
});

test("keyfiles are 0600 in manifest", () => {
  const modes = new Map(readManifest().map((entry) => [entry.destination, entry.mode]));
  const keyfiles = listOverlayFiles().filter((file) => file.endsWith(".nmconnection"));
  assert.deepEqual(keyfiles, [LAN_KEYFILE, WAN_KEYFILE]);
  for (const keyfile of keyfiles) assert.equal(modes.get(keyfile), "0600", `${keyfile}: NetworkManager ignores keyfiles that others can read`);
});

test("README documents each destination", () => {
  const readme = fs.readFileSync(path.join(OVERLAY, "README.md"), "utf8");
  for (const entry of readManifest()) {
    const row = readme.split("\n").find((line) => line.startsWith(`| \`${entry.destination}\` |`));
    assert.ok(row, `README.md has no table row for ${entry.destination}`);
    const mode = row.split("|")[2]?.trim();
    assert.equal(mode, entry.mode === "-" ? "FAT: none" : entry.mode, `README.md mode of ${entry.destination}`);
  }
});

test("units pass systemd-analyze verify", async () => {
  const systemdAnalyze = requireExecutable("systemd-analyze", "systemd");
  const version = await systemdVersion();
  assert.deepEqual([...unitBinaries()].sort(), ["/usr/bin/node", "/usr/sbin/nft"]);
  const root = buildTemporaryRoot();
  try {
    for (const unit of UNITS) {
      const name = path.basename(unit);
      const result = await run(systemdAnalyze, ["verify", `--root=${root}`, name]);
      assert.equal(result.exitCode, 0, `systemd-analyze verify ${name} failed:\n${result.stderr}`);
      assert.equal(result.stdout, "", `systemd-analyze verify ${name} printed output`);
      // Lines about other units come from the host's unit files, which the copy includes.
      const ownLines = result.stderr.split("\n").filter((line) => line.includes("cyphonic"));
      for (const line of ownLines) {
        const backoffKey = RESTART_BACKOFF_KEYS.find((key) => line.endsWith(`Unknown key '${key}' in section [Service], ignoring.`));
        assert.ok(backoffKey, `systemd ${version} warns about ${name}: ${line}`);
        assert.ok(version < RESTART_BACKOFF_MIN_SYSTEMD, `systemd ${version} knows ${backoffKey} but warns about it: ${line}`);
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("units have a low exposure level", async () => {
  const systemdAnalyze = requireExecutable("systemd-analyze", "systemd");
  const root = buildTemporaryRoot();
  try {
    for (const unit of UNITS) {
      const name = path.basename(unit);
      const output = await mustRun(systemdAnalyze, ["security", "--offline=yes", `--root=${root}`, "--no-pager", name]);
      const match = /Overall exposure level for \S+: (\d+\.\d) (\w+)/.exec(output);
      assert.ok(match, `no exposure level in systemd-analyze security output for ${name}:\n${output}`);
      const rank = match[2] as string;
      assert.ok(ACCEPTED_EXPOSURE_RANKS.has(rank), `${name} has exposure level ${match[1]} ${rank}, expected below 5.0`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("units enable into a root", async () => {
  const systemctl = requireExecutable("systemctl", "systemd");
  const root = buildTemporaryRoot();
  try {
    const names = [ADAPTER_UNIT, FIRSTBOOT_UNIT, FIREWALL_UNIT, CLOUD_UNIT].map((unit) => path.basename(unit));
    await mustRun(systemctl, [`--root=${root}`, "enable", ...names]);
    const expected: Array<[string, string]> = [
      ["multi-user.target.wants", "cyphonic-adapter.service"],
      ["multi-user.target.wants", "cyphonic-cloud.service"],
      ["sysinit.target.wants", "cyphonic-firstboot.service"],
      ["sysinit.target.wants", "cyphonic-firewall.service"],
    ];
    for (const [wants, name] of expected) {
      const link = path.join(root, "etc/systemd/system", wants, name);
      assert.equal(fs.readlinkSync(link), `/usr/lib/systemd/system/${name}`, `${wants}/${name}`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("sysusers creates service users", async () => {
  const sysusers = requireExecutable("systemd-sysusers", "systemd");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "cyov-sysusers-"));
  try {
    installOverlay(root);
    fs.mkdirSync(path.join(root, "etc"), { recursive: true });
    await mustRun(sysusers, [`--root=${root}`]);
    const passwd = fs.readFileSync(path.join(root, "etc/passwd"), "utf8");
    for (const [user, home] of [
      ["cyphonic", "/var/lib/cyphonic"],
      ["cyphonic-cloud", "/var/lib/cyphonic-cloud"],
    ]) {
      const line = passwd.split("\n").find((entry) => entry.startsWith(`${user}:`));
      assert.ok(line, `systemd-sysusers created no user ${user}:\n${passwd}`);
      const [, , uid, , , userHome, shell] = line.split(":");
      assert.ok(Number(uid) > 0, `${user} has uid ${uid}, expected a system uid above 0`);
      assert.ok(Number(uid) < 1000, `${user} has uid ${uid}, expected a system uid below 1000`);
      assert.equal(userHome, home, `${user} home`);
      assert.match(shell ?? "", /\/nologin$/, `${user} shell`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("adapter unit restart and notify settings", () => {
  const unit = readUnit(ADAPTER_UNIT);
  assert.equal(iniValue(unit, "Service", "Type"), "notify");
  assert.equal(iniValue(unit, "Service", "NotifyAccess"), "main");
  assert.equal(iniValue(unit, "Service", "WatchdogSec"), "30s");
  assert.equal(iniValue(unit, "Service", "Restart"), "always");
  assert.equal(iniValue(unit, "Unit", "StartLimitIntervalSec"), "0");
  assert.ok(iniWords(unit, "Unit", "Requires").includes("cyphonic-firewall.service"));
  assert.ok(iniWords(unit, "Unit", "After").includes("cyphonic-firewall.service"));
  assert.ok(iniWords(unit, "Unit", "After").includes("cyphonic-firstboot.service"));
  assert.ok(iniWords(unit, "Unit", "After").includes("network-online.target"));
  assert.ok(iniWords(unit, "Unit", "Wants").includes("network-online.target"));
});

test("adapter unit privileges and sandbox", () => {
  const unit = readUnit(ADAPTER_UNIT);
  assert.equal(iniValue(unit, "Service", "User"), "cyphonic");
  assert.equal(iniValue(unit, "Service", "Group"), "cyphonic");
  const expectedCapabilities = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"];
  assert.deepEqual(iniWords(unit, "Service", "AmbientCapabilities").sort(), expectedCapabilities);
  assert.deepEqual(iniWords(unit, "Service", "CapabilityBoundingSet").sort(), expectedCapabilities);
  assert.equal(iniValue(unit, "Service", "NoNewPrivileges"), "yes");
  assert.equal(iniValue(unit, "Service", "ProtectSystem"), "strict");
  assert.equal(iniValue(unit, "Service", "ProtectHome"), "yes");
  assert.equal(iniValue(unit, "Service", "PrivateTmp"), "yes");
  assert.equal(iniValue(unit, "Service", "ProtectKernelTunables"), "no");
  assert.equal(iniValue(unit, "Service", "ProtectKernelModules"), "yes");
  assert.equal(iniValue(unit, "Service", "MemoryDenyWriteExecute"), "no");
  assert.equal(iniValue(unit, "Service", "LockPersonality"), "yes");
  assert.equal(iniValue(unit, "Service", "StateDirectory"), "cyphonic");
  assert.equal(iniValue(unit, "Service", "StateDirectoryMode"), "0700");
  assert.equal(iniValue(unit, "Service", "RuntimeDirectory"), "cyphonic");
  assert.equal(iniValue(unit, "Service", "DevicePolicy"), "closed");
  assert.equal(iniValue(unit, "Service", "DeviceAllow"), "/dev/net/tun rw");
  assert.deepEqual(iniWords(unit, "Service", "RestrictAddressFamilies").sort(), ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"]);
  assert.equal(iniValue(unit, "Service", "SystemCallFilter"), "@system-service");
});

test("adapter command matches overlay files", () => {
  const unit = readUnit(ADAPTER_UNIT);
  const command = iniValue(unit, "Service", "ExecStart");
  assert.equal(command, `/usr/bin/node --max-semi-space-size=1 /usr/lib/cyphonic/cyphonic.cjs adapter --config ${ADAPTER_CONFIG}`);
  assert.deepEqual(iniValues(unit, "Service", "EnvironmentFile"), [], "the configuration file replaces the environment file");

  const config = readAdapterConfig();
  assert.equal(config.stateDir, `/var/lib/${iniValue(unit, "Service", "StateDirectory")}`);
  assert.equal(config.controlSocket, `/run/${iniValue(unit, "Service", "RuntimeDirectory")}/node.sock`);
  assert.equal(config.tokenFile, `${config.stateDir}/token.txt`, "the token file that first-boot provisioning writes");
  assert.equal(config.ledRoot, "/sys/class/leds");
  const defines = nftDefines(readOverlay(RULESET));
  assert.equal(config.tunName, defines.get("TUN"));
  assert.equal(String(config.port), defines.get("TUNNEL_PORT"));
});

test("adapter config is canonical JSON", () => {
  // First-boot provisioning writes the file back with JSON.stringify, so the
  // shipped layout makes a rewrite change only the lanInterface line.
  const text = readOverlay(ADAPTER_CONFIG);
  assert.equal(text, JSON.stringify(JSON.parse(text), null, 2) + "\n");
});

test("adapter unit stops restarting on status 2", () => {
  const unit = readUnit(ADAPTER_UNIT);
  assert.equal(iniValue(unit, "Service", "RestartPreventExitStatus"), "2");
});

test("firstboot unit runs before readers", () => {
  const unit = readUnit(FIRSTBOOT_UNIT);
  assert.equal(iniValue(unit, "Unit", "ConditionPathExists"), "/boot/firmware/cyphonic-token.txt");
  assert.equal(iniValue(unit, "Unit", "DefaultDependencies"), "no");
  const before = iniWords(unit, "Unit", "Before");
  for (const reader of ["cyphonic-adapter.service", "cyphonic-firewall.service", "NetworkManager.service", "network-pre.target"]) {
    assert.ok(before.includes(reader), `Before= lacks ${reader}`);
  }
  assert.equal(iniValue(unit, "Service", "Type"), "oneshot");
  assert.equal(iniValue(unit, "Service", "RemainAfterExit"), "yes");
  assert.equal(
    iniValue(unit, "Service", "ExecStart"),
    "/usr/bin/node /usr/lib/cyphonic/cyphonic.cjs appliance-provision --boot /boot/firmware --state /var/lib/cyphonic",
  );
  // Every file that provisioning rewrites must be in a writable path under ProtectSystem=strict.
  assert.equal(iniValue(unit, "Service", "ProtectSystem"), "strict");
  const writable = iniWords(unit, "Service", "ReadWritePaths");
  for (const rewritten of [ADAPTER_CONFIG, RULESET, WAN_KEYFILE, LAN_KEYFILE, "/boot/firmware/cyphonic-token.txt"]) {
    assert.ok(
      writable.some((directory) => rewritten.startsWith(`${directory}/`)),
      `${rewritten} is not under ReadWritePaths=${writable.join(" ")}`,
    );
  }
  assert.deepEqual(iniWords(unit, "Service", "RestrictAddressFamilies").sort(), ["AF_NETLINK", "AF_UNIX"]);
});

test("firewall unit loads the ruleset", () => {
  const unit = readUnit(FIREWALL_UNIT);
  assert.equal(iniValue(unit, "Service", "ExecStart"), `/usr/sbin/nft -f ${RULESET}`);
  assert.equal(iniValue(unit, "Service", "ExecReload"), `/usr/sbin/nft -f ${RULESET}`);
  assert.deepEqual(iniValues(unit, "Service", "ExecStop"), [], "stopping the unit must not remove the rules");
  assert.ok(iniWords(unit, "Unit", "Before").includes("network-pre.target"));
  assert.deepEqual(iniWords(unit, "Service", "CapabilityBoundingSet"), ["CAP_NET_ADMIN"]);
});

test("cloud unit runs without capabilities", () => {
  const unit = readUnit(CLOUD_UNIT);
  assert.equal(iniValue(unit, "Service", "Type"), "notify");
  assert.equal(iniValue(unit, "Service", "WatchdogSec"), "30s");
  assert.equal(iniValue(unit, "Service", "User"), "cyphonic-cloud");
  assert.deepEqual(iniValues(unit, "Service", "CapabilityBoundingSet"), [""]);
  assert.equal(iniValue(unit, "Service", "MemoryDenyWriteExecute"), "no");
  const command = iniValue(unit, "Service", "ExecStart");
  assert.equal(optionValue(command, "--state"), `/var/lib/${iniValue(unit, "Service", "StateDirectory")}`);
  assert.equal(optionValue(command, "--control"), `/run/${iniValue(unit, "Service", "RuntimeDirectory")}/cloud.sock`);
  // systemd removes a RuntimeDirectory when its unit stops, so the adapter's must differ.
  assert.notEqual(iniValue(unit, "Service", "RuntimeDirectory"), iniValue(readUnit(ADAPTER_UNIT), "Service", "RuntimeDirectory"));
});

test("WAN keyfile uses DHCP on eth0", () => {
  const keyfile = parseIni(readOverlay(WAN_KEYFILE), WAN_KEYFILE);
  assert.equal(iniValue(keyfile, "connection", "id"), "cyphonic-wan");
  assert.equal(iniValue(keyfile, "connection", "type"), "ethernet");
  assert.equal(iniValue(keyfile, "connection", "interface-name"), "eth0");
  assert.equal(iniValue(keyfile, "connection", "autoconnect"), "true");
  assert.match(iniValue(keyfile, "connection", "uuid"), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(iniValue(keyfile, "ipv4", "method"), "auto");
  assert.equal(iniValue(keyfile, "ipv6", "method"), "auto");
  assert.deepEqual(iniValues(keyfile, "ipv4", "never-default"), [], "the WAN carries the default route");
});

test("LAN keyfile leaves addresses alone", () => {
  const keyfile = parseIni(readOverlay(LAN_KEYFILE), LAN_KEYFILE);
  assert.equal(iniValue(keyfile, "connection", "id"), "cyphonic-lan");
  assert.equal(iniValue(keyfile, "connection", "type"), "ethernet");
  assert.equal(iniValue(keyfile, "connection", "interface-name"), "eth1");
  assert.equal(iniValue(keyfile, "connection", "autoconnect"), "true");
  assert.match(iniValue(keyfile, "connection", "uuid"), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(iniValue(keyfile, "ipv4", "method"), "disabled");
  assert.equal(iniValue(keyfile, "ipv4", "never-default"), "true");
  assert.equal(iniValue(keyfile, "ipv6", "method"), "disabled");
  assert.equal(iniValue(keyfile, "ipv6", "never-default"), "true");
  assert.deepEqual(iniValues(keyfile, "ipv4", "address1"), []);

  const wan = parseIni(readOverlay(WAN_KEYFILE), WAN_KEYFILE);
  assert.notEqual(iniValue(keyfile, "connection", "uuid"), iniValue(wan, "connection", "uuid"));
});

test("NetworkManager config limits profiles", () => {
  const config = parseIni(readOverlay(NM_CONF), NM_CONF);
  assert.equal(iniValue(config, "main", "no-auto-default"), "*");
  const tunDevice = nftDefines(readOverlay(RULESET)).get("TUN");
  const deviceSection = [...config.keys()].find((section) => section.startsWith("device-"));
  assert.ok(deviceSection, "no [device-*] section");
  assert.equal(iniValue(config, deviceSection, "match-device"), `interface-name:${tunDevice}`);
  assert.equal(iniValue(config, deviceSection, "managed"), "0");
});

test("interface defaults agree across files", () => {
  const defines = nftDefines(readOverlay(RULESET));
  const wan = parseIni(readOverlay(WAN_KEYFILE), WAN_KEYFILE);
  const lan = parseIni(readOverlay(LAN_KEYFILE), LAN_KEYFILE);
  const template = readOverlay(TOKEN_TEMPLATE);
  assert.equal(defines.get("WAN"), iniValue(wan, "connection", "interface-name"));
  assert.equal(defines.get("LAN"), iniValue(lan, "connection", "interface-name"));
  assert.equal(readAdapterConfig().lanInterface, defines.get("LAN"));
  assert.match(template, new RegExp(`^#wan_interface=${defines.get("WAN")}$`, "m"));
  assert.match(template, new RegExp(`^#lan_interface=${defines.get("LAN")}$`, "m"));
  assert.notEqual(defines.get("WAN"), defines.get("LAN"));
});

test("token template documents its keys", () => {
  const template = readOverlay(TOKEN_TEMPLATE);
  const activeKeys = [...template.matchAll(/^([a-z_]+)=/gm)].map((match) => match[1]);
  assert.deepEqual(activeKeys, ["as_endpoint", "as_key", "token"]);
  for (const key of activeKeys) assert.match(template, new RegExp(`^${key}=$`, "m"), `${key} must be left empty for the user`);
  const optionalKeys = [...template.matchAll(/^#([a-z_]+)=/gm)].map((match) => match[1]);
  assert.deepEqual(optionalKeys, ["wan_interface", "lan_interface", "wan_mode", "wan_address", "wan_gateway", "wan_dns"]);
  assert.match(template, /^#wan_mode=dhcp$/m);
  // Every setting line has a comment line right above it.
  const lines = template.split("\n");
  lines.forEach((line, index) => {
    if (!/^#?[a-z_]+=/.test(line)) return;
    assert.match(lines[index - 1] ?? "", /^# /, `line ${index + 1} (${line}) has no comment above it`);
  });
});

test("token template parses once filled", () => {
  const template = readOverlay(TOKEN_TEMPLATE);
  assert.throws(() => parseTokenFile(template, "template"), /missing field "as_endpoint"/);

  const spki = generateKeyPairSync("x25519").publicKey.export({ format: "der", type: "spki" });
  const publicKey = spki.subarray(spki.length - 32);
  const token = randomBytes(24).toString("base64url");
  const filled = template
    .replace(/^as_endpoint=$/m, "as_endpoint=198.51.100.7:7400,[2001:db8::7]:7400")
    .replace(/^as_key=$/m, `as_key=${publicKey.toString("base64")}`)
    .replace(/^token=$/m, `token=${token}`);
  const parsed = parseTokenFile(filled, "filled template");
  assert.deepEqual(parsed.asEndpoints, [
    { address: "198.51.100.7", port: 7400 },
    { address: "2001:db8::7", port: 7400 },
  ]);
  assert.deepEqual(parsed.asKey, publicKey);
  assert.equal(parsed.token, token);
});

test("sysctl file sets only net keys", () => {
  const settings = readSysctlSettings();
  assert.deepEqual([...settings.keys()], [
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.all.send_redirects",
    "net.ipv4.conf.*.send_redirects",
    "net.core.rmem_max",
    "net.core.wmem_max",
  ]);
  for (const [key, value] of settings) assert.match(value, /^[0-9]+$/, `${key} = ${value}`);
});

// ---------------------------------------------------------------------------
// Tests in network namespaces (root)

describe("firewall and sysctls in namespaces", { skip: namespaceSkipReason() }, () => {
  const namespaces: Namespace[] = [];

  after(async () => {
    await deleteNamespaces(namespaces);
  });

  async function newNamespace(suffix = ""): Promise<Namespace> {
    const namespace = await Namespace.create(suffix);
    namespaces.push(namespace);
    return namespace;
  }

  test("ruleset passes nft -c", async () => {
    requireExecutable("nft", "nftables");
    const namespace = await newNamespace();
    const checked = await namespace.exec(["nft", "-c", "-f", overlayPath(RULESET)]);
    assert.equal(checked.exitCode, 0, `nft -c -f ${RULESET} failed:\n${checked.stderr}`);
    const listing = await listRuleset(namespace);
    assert.equal(listing.nftables.filter((item) => item.table).length, 0, "nft -c must not load the table");
  });

  test("ruleset loads beside adapter table", async () => {
    requireExecutable("nft", "nftables");
    const namespace = await newNamespace();
    const defines = nftDefines(readOverlay(RULESET));
    await namespace.mustExec(["nft", "-f", overlayPath(RULESET)]);
    await namespace.mustExec(["nft", "-f", "-"], { input: adapterRuleset(defines.get("LAN")!, defines.get("TUN")!) });
    await namespace.mustExec(["nft", "add", "element", "inet", "cyphonic_adapter", "leases", "{ 02:00:00:00:0a:01 . 100.64.0.9 }"]);
    // A reload of the appliance ruleset replaces its own table only.
    await namespace.mustExec(["nft", "-f", overlayPath(RULESET)]);

    const listing = await listRuleset(namespace);
    const tables = listing.nftables.flatMap((item) => (item.table ? [`${item.table.family} ${item.table.name}`] : [])).sort();
    assert.deepEqual(tables, ["inet cyphonic_adapter", "inet cyphonic_appliance"]);
    const leases = listing.nftables.find((item) => item.set?.table === "cyphonic_adapter" && item.set.name === "leases")?.set;
    assert.equal(leases?.elem?.length, 1, "the adapter's lease survives a reload of the appliance ruleset");

    const chains = new Map(
      listing.nftables.flatMap((item) => (item.chain?.table === APPLIANCE_TABLE ? [[item.chain.name, item.chain] as const] : [])),
    );
    assert.deepEqual([...chains.keys()].sort(), ["forward", "input", "output"]);
    for (const [name, policy] of [
      ["input", "drop"],
      ["forward", "drop"],
      ["output", "accept"],
    ] as const) {
      assert.equal(chains.get(name)?.hook, name, `${name} chain hook`);
      assert.equal(chains.get(name)?.policy, policy, `${name} chain policy`);
      assert.equal(chains.get(name)?.prio, 0, `${name} chain priority`);
    }
  });

  test("sysctl file applies in namespace", async () => {
    const systemdSysctl = requireExecutable("systemd-sysctl", "systemd", ["/usr/lib/systemd", "/lib/systemd"]);
    const settings = readSysctlSettings();
    // Only net.* keys belong to a network namespace, so any other key would change the host.
    for (const key of settings.keys()) assert.ok(key.startsWith("net."), `${key} is not a per-namespace key`);
    const namespace = await newNamespace();
    const plainKeys = [...settings.keys()].filter((key) => !key.includes("*"));
    const plainFiles = plainKeys.map(procSysPath);
    await namespace.readProcSys(plainFiles);
    const hostBefore = plainFiles.map((file) => fs.readFileSync(file, "utf8"));

    const applied = await namespace.exec([systemdSysctl, overlayPath(SYSCTL_FILE)]);
    assert.equal(applied.exitCode, 0, `systemd-sysctl failed:\n${applied.stderr}`);
    assert.equal(applied.stderr, "", "systemd-sysctl printed warnings");

    const values = await namespace.readProcSys(plainFiles);
    for (const key of plainKeys) assert.equal(values.get(procSysPath(key)), settings.get(key), key);
    const interfaces = (await namespace.mustExec(["ls", "/proc/sys/net/ipv4/conf"])).trim().split(/\s+/);
    assert.deepEqual(interfaces.sort(), ["all", "default", "lo"]);
    const redirects = await namespace.readProcSys(interfaces.map((name) => `/proc/sys/net/ipv4/conf/${name}/send_redirects`));
    for (const [file, value] of redirects) assert.equal(value, "0", file);

    // An interface that appears later gets the glob from the udev rule of
    // systemd (99-systemd.rules), which runs systemd-sysctl with its prefix.
    await namespace.mustExec(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1peer"]);
    const newInterface = "/proc/sys/net/ipv4/conf/eth1/send_redirects";
    assert.equal((await namespace.readProcSys([newInterface])).get(newInterface), "0", "conf/default passes 0 on to a new interface");
    await namespace.mustExec(["sh", "-c", `echo 1 > ${newInterface}`]);
    await namespace.mustExec([systemdSysctl, "--prefix=/net/ipv4/conf/eth1", overlayPath(SYSCTL_FILE)]);
    assert.equal((await namespace.readProcSys([newInterface])).get(newInterface), "0", "the udev rule's command applies the glob");

    const hostAfter = plainFiles.map((file) => fs.readFileSync(file, "utf8"));
    assert.deepEqual(hostAfter, hostBefore, "the host's values must not change");
  });

  describe("service user capabilities", () => {
    let tunDirectory: string | undefined;

    before(() => {
      // The host's /dev/net/tun may be 0600, while udev on the appliance
      // makes it 0666. A private node with the same device number and mode
      // 0666 reproduces the appliance's permissions for the unprivileged user.
      tunDirectory = fs.mkdtempSync(path.join(os.tmpdir(), "cyov-tun-"));
      fs.chmodSync(tunDirectory, 0o755);
    });

    after(() => {
      if (tunDirectory) fs.rmSync(tunDirectory, { recursive: true, force: true });
    });

    interface StepOutcome {
      step: string;
      ok: boolean;
      error?: string;
    }

    /** Runs the fixture as the unprivileged user with `capabilities` and returns each step's outcome. */
    async function runAsServiceUser(namespace: Namespace, capabilities: readonly string[]): Promise<StepOutcome[]> {
      const setpriv = requireExecutable("setpriv", "util-linux");
      const capabilityList = ["-all", ...capabilities.map((name) => `+${name}`)].join(",");
      const result = await namespace.exec(
        [
          setpriv,
          `--reuid=${UNPRIVILEGED_UID}`,
          `--regid=${UNPRIVILEGED_UID}`,
          "--clear-groups",
          `--inh-caps=${capabilityList}`,
          `--ambient-caps=${capabilityList}`,
          `--bounding-set=${capabilityList}`,
          "env",
          "CYPHONIC_LOG_LEVEL=warn",
          process.execPath,
          "--import",
          "tsx",
          path.join(FIXTURES, "overlay-service-user.ts"),
          "eth1",
          path.join(tunDirectory!, "tun"),
        ],
        { timeoutMs: 60_000 },
      );
      assert.equal(result.exitCode, 0, `fixture failed:\n${result.stderr}${result.stdout}`);
      const lines = result.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { fixture?: string; uid?: number } & StepOutcome);
      const done = lines.find((line) => line.fixture === "done");
      assert.equal(done?.uid, UNPRIVILEGED_UID, "the fixture ran as the unprivileged user");
      return lines.filter((line) => line.fixture === "step");
    }

    async function namespaceWithLan(): Promise<Namespace> {
      const namespace = await newNamespace();
      await namespace.mustExec(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1peer"]);
      await namespace.mustExec(["ip", "link", "set", "eth1", "up"]);
      await namespace.mustExec(["ip", "link", "set", "eth1peer", "up"]);
      return namespace;
    }

    test("unit capabilities suffice for start", async (t) => {
      if (!fs.existsSync("/dev/net/tun")) {
        t.skip("/dev/net/tun is missing");
        return;
      }
      fs.rmSync(path.join(tunDirectory!, "tun"), { force: true });
      await mustRun("mknod", ["-m", "0666", path.join(tunDirectory!, "tun"), "c", "10", "200"]);
      const capabilities = capabilityNames(iniWords(readUnit(ADAPTER_UNIT), "Service", "AmbientCapabilities"));
      const namespace = await namespaceWithLan();
      const outcomes = await runAsServiceUser(namespace, capabilities);
      assert.deepEqual(
        outcomes.map((outcome) => outcome.step),
        ["lan-setup", "tun-device", "dhcp-socket", "dns-socket"],
      );
      for (const outcome of outcomes) assert.ok(outcome.ok, `${outcome.step} failed with ${capabilities.join(",")}: ${outcome.error}`);
    });

    test("start fails without capabilities", async (t) => {
      if (!fs.existsSync("/dev/net/tun")) {
        t.skip("/dev/net/tun is missing");
        return;
      }
      fs.rmSync(path.join(tunDirectory!, "tun"), { force: true });
      await mustRun("mknod", ["-m", "0666", path.join(tunDirectory!, "tun"), "c", "10", "200"]);
      const namespace = await namespaceWithLan();
      const outcomes = await runAsServiceUser(namespace, []);
      assert.equal(outcomes.length, 4);
      for (const outcome of outcomes) assert.equal(outcome.ok, false, `${outcome.step} succeeded without capabilities`);
    });

    test("net sysctl write needs CAP_NET_ADMIN", async () => {
      const setpriv = requireExecutable("setpriv", "util-linux");
      const namespace = await newNamespace();
      const file = "/proc/sys/net/ipv4/ip_forward";
      const asUser = (capabilities: string) => [
        setpriv,
        `--reuid=${UNPRIVILEGED_UID}`,
        `--regid=${UNPRIVILEGED_UID}`,
        "--clear-groups",
        `--inh-caps=${capabilities}`,
        `--ambient-caps=${capabilities}`,
        `--bounding-set=${capabilities}`,
        "sh",
        "-c",
        `echo 1 > ${file}`,
      ];
      const denied = await namespace.exec(asUser("-all"));
      assert.notEqual(denied.exitCode, 0, "a user without capabilities wrote ip_forward");
      assert.match(denied.stderr, /Permission denied/);
      assert.equal((await namespace.readProcSys([file])).get(file), "0");

      await namespace.mustExec(asUser("-all,+net_admin"));
      assert.equal((await namespace.readProcSys([file])).get(file), "1");
    });
  });

  describe("firewall lab", () => {
    let router: Namespace;
    let wanHost: Namespace;
    let lanHost: Namespace;
    const routerWanAddress = "192.0.2.1";
    const wanHostAddress = "192.0.2.2";
    const routerLanAddress = "10.99.1.1";
    const lanHostAddress = "10.99.1.2";
    const overlayAddress = "100.64.0.9";

    /** Turns IPv6 off, so router solicitations and MLD reports of the hosts do not add to the counters. */
    async function disableIPv6(namespace: Namespace): Promise<void> {
      await namespace.mustExec(["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"]);
    }

    before(async () => {
      requireExecutable("nft", "nftables");
      const systemdSysctl = requireExecutable("systemd-sysctl", "systemd", ["/usr/lib/systemd", "/lib/systemd"]);
      router = await newNamespace();
      wanHost = await newNamespace("w");
      lanHost = await newNamespace("l");
      for (const namespace of [router, wanHost, lanHost]) await disableIPv6(namespace);
      const defines = nftDefines(readOverlay(RULESET));
      const wan = defines.get("WAN")!;
      const lan = defines.get("LAN")!;
      const tun = defines.get("TUN")!;

      await mustRun("ip", ["-n", router.name, "link", "add", wan, "type", "veth", "peer", "name", "uplink", "netns", wanHost.name]);
      await mustRun("ip", ["-n", router.name, "link", "add", lan, "type", "veth", "peer", "name", "port", "netns", lanHost.name]);
      await router.mustExec(["ip", "tuntap", "add", "dev", tun, "mode", "tun"]);
      await router.mustExec(["ip", "address", "add", `${routerWanAddress}/24`, "dev", wan]);
      await router.mustExec(["ip", "address", "add", `${routerLanAddress}/24`, "dev", lan]);
      for (const name of [wan, lan, tun]) await router.mustExec(["ip", "link", "set", name, "up"]);
      await router.mustExec(["ip", "route", "add", "100.64.0.0/16", "dev", tun]);
      await wanHost.mustExec(["ip", "address", "add", `${wanHostAddress}/24`, "dev", "uplink"]);
      await wanHost.mustExec(["ip", "link", "set", "uplink", "up"]);
      await wanHost.mustExec(["ip", "route", "add", "default", "via", routerWanAddress]);
      await lanHost.mustExec(["ip", "address", "add", `${lanHostAddress}/24`, "dev", "port"]);
      await lanHost.mustExec(["ip", "link", "set", "port", "up"]);
      await lanHost.mustExec(["ip", "route", "add", "default", "via", routerLanAddress]);

      await router.mustExec([systemdSysctl, overlayPath(SYSCTL_FILE)]);
      await router.mustExec(["nft", "-f", overlayPath(RULESET)]);
      // Resolve the neighbors first, so the first datagram of each test is not held back by ARP.
      await wanHost.mustExec(["ping", "-c", "1", "-W", "2", routerWanAddress]);
      await lanHost.mustExec(["ping", "-c", "1", "-W", "2", routerLanAddress]);
    });

    /** Sends `count` UDP datagrams from a namespace with bash's /dev/udp. */
    async function sendUdp(from: Namespace, address: string, port: number, count = 1): Promise<void> {
      await from.mustExec(["bash", "-c", `for i in $(seq ${count}); do printf probe > /dev/udp/${address}/${port}; done`]);
      // The datagrams cross veth pairs inside the kernel, and a short pause lets the last one reach the hook.
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    /** Returns how much each counter grew while `action` ran. */
    async function counterGrowth<const Labels extends ReadonlyArray<readonly [string, string]>>(
      labels: Labels,
      action: () => Promise<void>,
    ): Promise<{ [Index in keyof Labels]: number }> {
      const beforeListing = await listRuleset(router);
      await action();
      const afterListing = await listRuleset(router);
      const growth = labels.map(([chain, comment]) => ruleCounter(afterListing, chain, comment) - ruleCounter(beforeListing, chain, comment));
      return growth as { [Index in keyof Labels]: number };
    }

    const TUNNEL: readonly [string, string] = ["input", "tunnels and signaling"];
    const DNS_UDP: readonly [string, string] = ["input", "DNS server over UDP"];
    const DNS_TCP: readonly [string, string] = ["input", "DNS server over TCP"];
    const DHCP_SERVER: readonly [string, string] = ["input", "DHCP server"];
    const ECHO: readonly [string, string] = ["input", "IPv4 echo requests"];
    const ECHO_OVER_LIMIT: readonly [string, string] = ["input", "IPv4 echo requests over the limit"];
    const INPUT_DROPPED: readonly [string, string] = ["input", "dropped by the input policy"];
    const LAN_TO_OVERLAY: readonly [string, string] = ["forward", "LAN to overlay"];
    const OVERLAY_TO_LAN: readonly [string, string] = ["forward", "overlay to LAN"];
    const FORWARD_DROPPED: readonly [string, string] = ["forward", "dropped by the forward policy"];

    test("WAN accepts the tunnel port", async () => {
      const [tunnel, dropped] = await counterGrowth([TUNNEL, INPUT_DROPPED], () => sendUdp(wanHost, routerWanAddress, 7000, 3));
      assert.equal(tunnel, 3);
      assert.equal(dropped, 0);
    });

    test("WAN drops other ports", async () => {
      const [tunnel, dns, dropped] = await counterGrowth([TUNNEL, DNS_UDP, INPUT_DROPPED], async () => {
        await sendUdp(wanHost, routerWanAddress, 7001);
        await sendUdp(wanHost, routerWanAddress, 53);
      });
      assert.equal(tunnel, 0);
      assert.equal(dns, 0, "DNS is served on the LAN only");
      assert.equal(dropped, 2);
    });

    test("LAN accepts DHCP and DNS", async () => {
      const [dhcp, dnsUdp, dnsTcp, tunnel, dropped] = await counterGrowth([DHCP_SERVER, DNS_UDP, DNS_TCP, TUNNEL, INPUT_DROPPED], async () => {
        await sendUdp(lanHost, routerLanAddress, 67);
        await sendUdp(lanHost, routerLanAddress, 53);
        // Nothing listens, so the kernel replies to the SYN with a reset and the connect fails.
        await lanHost.exec(["timeout", "3", "bash", "-c", `exec 3<>/dev/tcp/${routerLanAddress}/53`]);
        await sendUdp(lanHost, routerLanAddress, 7000);
      });
      assert.equal(dhcp, 1);
      assert.equal(dnsUdp, 1);
      assert.equal(dnsTcp, 1);
      assert.equal(tunnel, 0, "the tunnel port is open on the WAN only");
      assert.equal(dropped, 1);
    });

    test("echo requests are rate-limited", async () => {
      const reply = await wanHost.exec(["ping", "-c", "2", "-W", "2", routerWanAddress]);
      assert.equal(reply.exitCode, 0, `ping failed:\n${reply.stdout}${reply.stderr}`);
      // 200 requests of one ping in about 0.2 s. They share one conntrack
      // flow, so only the limit rules, which precede the conntrack rule,
      // decide. The burst passes and the rest is dropped.
      const [accepted, overLimit, dropped] = await counterGrowth([ECHO, ECHO_OVER_LIMIT, INPUT_DROPPED], async () => {
        await wanHost.exec(["ping", "-c", "200", "-i", "0.001", "-W", "1", "-q", routerWanAddress], { timeoutMs: 30_000 });
      });
      assert.ok(accepted >= 15, `${accepted} of 200 echo requests accepted, expected about the burst of 20`);
      assert.ok(accepted <= 60, `${accepted} of 200 echo requests accepted, expected about the burst of 20`);
      assert.equal(accepted + overLimit, 200);
      assert.equal(dropped, 0);
    });

    test("forward allows LAN to overlay only", async () => {
      const [lanToOverlay, overlayToLan, dropped] = await counterGrowth([LAN_TO_OVERLAY, OVERLAY_TO_LAN, FORWARD_DROPPED], async () => {
        await sendUdp(lanHost, overlayAddress, 9, 2);
        await sendUdp(wanHost, lanHostAddress, 9);
        await sendUdp(lanHost, wanHostAddress, 9);
      });
      assert.equal(lanToOverlay, 2);
      assert.equal(overlayToLan, 0);
      assert.equal(dropped, 2, "WAN to LAN and LAN to WAN are dropped");
    });
  });
});
