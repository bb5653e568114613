// `cyphonic appliance-provision` run as a process on temporary boot, state
// and root directories. For every step, a run killed with SIGKILL right
// after it (as by a power cut) is finished by the next run. Also: the exit
// status and error file for a bad token file, a second run after success,
// and a boot file that appears after the adapter is provisioned.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { readAdapterConfigFile } from "../../firmware/src/appliance/config/index.js";
import { readProvisionError } from "../../firmware/src/appliance/provisioning/error-file.js";
import { PROVISION_STEPS, ProvisionStep } from "../../firmware/src/appliance/provisioning/steps.js";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";

const MAIN = path.resolve("firmware/src/cli/main.ts");
const OVERLAY = path.resolve("overlay");
const CONNECTIONS = "etc/NetworkManager/system-connections";
const ROOT_FILES = {
  wan: `${CONNECTIONS}/cyphonic-wan.nmconnection`,
  lan: `${CONNECTIONS}/cyphonic-lan.nmconnection`,
  nft: "etc/cyphonic/appliance.nft",
  config: "etc/cyphonic/adapter.json",
} as const;

const AS_KEY = generateKeyPair().publicKey.toString("base64");
const SECRET = "First-Token_0123456789";

function tokenLines(secret: string): string[] {
  return ["# CYPHONIC Adapter token", "as_endpoint=198.51.100.7:7400", `as_key=${AS_KEY}`, `token=${secret}`];
}

/** Token and every network setting: each root file changes. */
const FULL_FILE = [
  ...tokenLines(SECRET),
  "wan_interface=eth1",
  "lan_interface=eth0",
  "wan_mode=static",
  "wan_address=192.0.2.10/24",
  "wan_gateway=192.0.2.1",
  "wan_dns=192.0.2.53,198.51.100.53",
  "",
].join("\n");

function overlayText(file: string): string {
  return fs.readFileSync(path.join(OVERLAY, file), "utf8");
}

/** The root files after FULL_FILE, written from the overlay independently of the code under test. */
const EXPECTED_ROOT: Record<keyof typeof ROOT_FILES, string> = {
  wan: overlayText(ROOT_FILES.wan)
    .replace("interface-name=eth0", "interface-name=eth1")
    .replace("[ipv4]\nmethod=auto\n", "[ipv4]\nmethod=manual\naddress1=192.0.2.10/24\ngateway=192.0.2.1\ndns=192.0.2.53;198.51.100.53;\n"),
  lan: overlayText(ROOT_FILES.lan).replace("interface-name=eth1", "interface-name=eth0"),
  nft: overlayText(ROOT_FILES.nft).replace('define WAN = "eth0"', 'define WAN = "eth1"').replace('define LAN = "eth1"', 'define LAN = "eth0"'),
  config: overlayText(ROOT_FILES.config).replace('"lanInterface": "eth1"', '"lanInterface": "eth0"'),
};

/** Modes from overlay/MANIFEST. */
const ROOT_MODES: Record<keyof typeof ROOT_FILES, number> = { wan: 0o600, lan: 0o600, nft: 0o644, config: 0o644 };

function expectedStateToken(secret: string): string {
  return `# CYPHONIC provisioning token: one use, keep it secret.\nas_endpoint=198.51.100.7:7400\nas_key=${AS_KEY}\ntoken=${secret}\n`;
}

interface Dirs {
  boot: string;
  state: string;
  root: string;
  bootFile: string;
}

/** Creates a boot directory with `bootText` as the token file (unless null), an empty state directory and a copy of the overlay as root. */
function setup(t: TestContext, bootText: string | null = FULL_FILE): Dirs {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "cyphonic-provision-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dirs = { boot: path.join(dir, "bootfs"), state: path.join(dir, "state"), root: path.join(dir, "root"), bootFile: "" };
  dirs.bootFile = path.join(dirs.boot, "cyphonic-token.txt");
  fs.mkdirSync(dirs.boot);
  fs.mkdirSync(dirs.state, { mode: 0o700 });
  fs.cpSync(OVERLAY, dirs.root, { recursive: true });
  for (const key of Object.keys(ROOT_FILES) as (keyof typeof ROOT_FILES)[]) fs.chmodSync(path.join(dirs.root, ROOT_FILES[key]), ROOT_MODES[key]);
  if (bootText !== null) fs.writeFileSync(dirs.bootFile, bootText);
  return dirs;
}

interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function provision(dirs: Dirs, options: { crashAt?: string; allowHook?: boolean; boot?: string[] } = {}): RunResult {
  const env: NodeJS.ProcessEnv = { ...process.env, CYPHONIC_LOG_LEVEL: "silent" };
  delete env.CYPHONIC_PROVISION_CRASH_AT;
  if (options.crashAt !== undefined) env.CYPHONIC_PROVISION_CRASH_AT = options.crashAt;
  const bootArgs = (options.boot ?? [dirs.boot]).flatMap((dir) => ["--boot", dir]);
  const args = ["--import", "tsx", MAIN, "appliance-provision", ...bootArgs, "--state", dirs.state, "--root", dirs.root];
  if (options.allowHook) args.push("--allow-crash-hook");
  const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 30_000, env });
  return { status: r.status, signal: r.signal, stderr: r.stderr };
}

function readRoot(dirs: Dirs, key: keyof typeof ROOT_FILES): string {
  return fs.readFileSync(path.join(dirs.root, ROOT_FILES[key]), "utf8");
}

/** Lists every file under `dir` whose name marks a temporary file of writeFileAtomic. */
function tempFilesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((name) => /\.tmp$/.test(name));
}

/** Checks the state after a successful provisioning with FULL_FILE. */
function assertProvisioned(dirs: Dirs, secret = SECRET): void {
  assert.deepEqual(fs.readdirSync(dirs.state).sort(), ["appliance-provision.json", "token.txt"], "state directory: one token.txt and the record");
  const token = path.join(dirs.state, "token.txt");
  assert.equal(fs.statSync(token).mode & 0o777, 0o600, "token.txt mode");
  assert.equal(fs.readFileSync(token, "utf8"), expectedStateToken(secret));
  assert.deepEqual(fs.readdirSync(dirs.boot), [], "boot partition: the token file is gone");
  for (const key of Object.keys(ROOT_FILES) as (keyof typeof ROOT_FILES)[]) {
    assert.equal(readRoot(dirs, key), EXPECTED_ROOT[key], `${ROOT_FILES[key]} content`);
    assert.equal(fs.statSync(path.join(dirs.root, ROOT_FILES[key])).mode & 0o777, ROOT_MODES[key], `${ROOT_FILES[key]} mode`);
  }
  for (const dir of [dirs.state, dirs.boot, dirs.root]) assert.deepEqual(tempFilesUnder(dir), [], `temporary files left in ${dir}`);
}

function stepIndex(step: ProvisionStep): number {
  return PROVISION_STEPS.indexOf(step);
}

/** Checks what a run killed right after `crashed` has left on disk. */
function assertStoppedAfter(dirs: Dirs, crashed: ProvisionStep): void {
  const reached = (step: ProvisionStep) => stepIndex(crashed) >= stepIndex(step);
  const rootSteps: [keyof typeof ROOT_FILES, ProvisionStep][] = [
    ["wan", "write-wan-profile"],
    ["lan", "write-lan-profile"],
    ["nft", "write-firewall"],
    ["config", "write-adapter-config"],
  ];
  for (const [key, step] of rootSteps) {
    assert.equal(readRoot(dirs, key), reached(step) ? EXPECTED_ROOT[key] : overlayText(ROOT_FILES[key]), `${ROOT_FILES[key]} after ${crashed}`);
  }
  assert.equal(fs.existsSync(path.join(dirs.state, "appliance-provision.json")), reached("record-token-hash"), "record");
  assert.equal(fs.existsSync(path.join(dirs.state, "token.txt")), reached("write-state-token"), "token.txt");
  if (reached("delete-boot-file")) {
    assert.equal(fs.existsSync(dirs.bootFile), false, "boot file deleted");
  } else if (reached("wipe-boot-file")) {
    assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), "\n".repeat(Buffer.byteLength(FULL_FILE)), "boot file wiped in place");
  } else {
    assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), FULL_FILE, "boot file untouched");
  }
}

test("step list names each step once", () => {
  assert.equal(new Set(PROVISION_STEPS).size, PROVISION_STEPS.length);
  assert.equal(PROVISION_STEPS.length, 10);
});

for (const step of PROVISION_STEPS) {
  test(`provision killed after ${step} is finished by the next run`, (t) => {
    const dirs = setup(t);
    const crashed = provision(dirs, { crashAt: step, allowHook: true });
    assert.equal(crashed.signal, "SIGKILL", `the run was not killed after ${step}: status ${crashed.status}, ${crashed.stderr}`);
    assertStoppedAfter(dirs, step);

    const rerun = provision(dirs);
    assert.equal(rerun.status, 0, rerun.stderr);
    assertProvisioned(dirs);
  });
}

test("provision second run is no-op", (t) => {
  const dirs = setup(t);
  const first = provision(dirs);
  assert.equal(first.status, 0, first.stderr);
  assertProvisioned(dirs);

  const snapshot = () =>
    [dirs.state, dirs.boot, dirs.root].flatMap((dir) =>
      (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((name) => {
        const file = path.join(dir, name);
        const stats = fs.statSync(file);
        const content = stats.isFile() ? createHash("sha256").update(fs.readFileSync(file)).digest("hex") : "dir";
        return `${file} ${stats.ino} ${stats.mtimeMs} ${stats.mode} ${content}`;
      }),
    );
  const before = snapshot();
  const second = provision(dirs);
  assert.equal(second.status, 0, second.stderr);
  assert.deepEqual(snapshot(), before);
});

test("provisioned adapter config loads", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs).status, 0);
  const config = readAdapterConfigFile(path.join(dirs.root, ROOT_FILES.config));
  assert.equal(config.lanInterface, "eth0");
  assert.equal(config.stateDir, "/var/lib/cyphonic");
});

test("provision without boot file exits 0", (t) => {
  const dirs = setup(t, null);
  const r = provision(dirs);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(fs.readdirSync(dirs.state), []);
  for (const key of Object.keys(ROOT_FILES) as (keyof typeof ROOT_FILES)[]) assert.equal(readRoot(dirs, key), overlayText(ROOT_FILES[key]));
});

test("provision invalid file exits 2 with error file", (t) => {
  const bad = [...tokenLines(SECRET), "wan_mode=dhcpp", ""].join("\n");
  const dirs = setup(t, bad);
  const r = provision(dirs);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /cyphonic-token\.txt: line 5: wan_mode must be dhcp or static, got "dhcpp"/);
  assert.ok(!r.stderr.includes(SECRET), "the secret was printed");
  assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), bad, "the boot file stays for the user to fix");
  assert.deepEqual(fs.readdirSync(dirs.state), ["provision-error.txt"]);
  const errorText = fs.readFileSync(path.join(dirs.state, "provision-error.txt"), "utf8");
  assert.equal(errorText, 'cyphonic-token.txt: line 5: wan_mode must be dhcp or static, got "dhcpp"\n');
  assert.equal(readProvisionError(dirs.state, [dirs.boot]), errorText.trim());
  assert.equal(readRoot(dirs, "wan"), overlayText(ROOT_FILES.wan));

  fs.writeFileSync(dirs.bootFile, FULL_FILE);
  const fixed = provision(dirs);
  assert.equal(fixed.status, 0, fixed.stderr);
  assertProvisioned(dirs);
  assert.equal(readProvisionError(dirs.state, [dirs.boot]), null);
});

test("provision error file is stale without boot file", (t) => {
  const dirs = setup(t, [...tokenLines(SECRET), "wan_mode=dhcpp", ""].join("\n"));
  assert.equal(provision(dirs).status, 2);
  fs.rmSync(dirs.bootFile);
  assert.ok(fs.existsSync(path.join(dirs.state, "provision-error.txt")));
  assert.equal(readProvisionError(dirs.state, [dirs.boot]), null, "an error about a deleted boot file is not reported");
});

test("provision broken root file exits 1", (t) => {
  const dirs = setup(t);
  const nft = path.join(dirs.root, ROOT_FILES.nft);
  fs.writeFileSync(nft, overlayText(ROOT_FILES.nft).replace(/^define LAN = .*\n/m, ""));
  const r = provision(dirs);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /appliance\.nft has 0 lines matching .*define LAN.*install the file again from the appliance overlay/);
  assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), FULL_FILE, "the boot file stays until the token is copied");
  assert.equal(fs.existsSync(path.join(dirs.state, "token.txt")), false);
  assert.match(fs.readFileSync(path.join(dirs.state, "provision-error.txt"), "utf8"), /appliance\.nft has 0 lines/);
});

test("provision new boot file after identity is left alone", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs).status, 0);
  // What the adapter's first start leaves: identity.json, and token.txt deleted.
  const identity = '{"nodeId": 7}\n';
  fs.writeFileSync(path.join(dirs.state, "identity.json"), identity, { mode: 0o600 });
  fs.rmSync(path.join(dirs.state, "token.txt"));
  const rootBefore = Object.fromEntries(Object.keys(ROOT_FILES).map((key) => [key, readRoot(dirs, key as keyof typeof ROOT_FILES)]));

  const second = [...tokenLines("Second-Token_0123456789"), "lan_interface=eth1", "wan_interface=eth0", ""].join("\n");
  fs.writeFileSync(dirs.bootFile, second);
  const r = provision(dirs);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /cyphonic-token\.txt: this adapter is already provisioned \(.*identity\.json exists\), so the token in this file was not used and the file was left in place; delete it from the boot partition/);
  assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), second, "the boot file is left alone");
  assert.equal(fs.readFileSync(path.join(dirs.state, "identity.json"), "utf8"), identity);
  assert.equal(fs.existsSync(path.join(dirs.state, "token.txt")), false, "the new token was copied");
  for (const key of Object.keys(ROOT_FILES) as (keyof typeof ROOT_FILES)[]) assert.equal(readRoot(dirs, key), rootBefore[key], `${ROOT_FILES[key]} changed`);
  assert.match(readProvisionError(dirs.state, [dirs.boot]) ?? "", /already provisioned/);
});

test("provision retires own token after redemption", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs, { crashAt: "write-state-token", allowHook: true }).signal, "SIGKILL");
  // The adapter started although this run stopped short, and redeemed the token.
  fs.writeFileSync(path.join(dirs.state, "identity.json"), "{}\n");
  fs.rmSync(path.join(dirs.state, "token.txt"));

  const r = provision(dirs);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.existsSync(dirs.bootFile), false, "the redeemed token stayed on the boot partition");
  assert.deepEqual(fs.readdirSync(dirs.state).sort(), ["appliance-provision.json", "identity.json"], "token.txt was written again");
  assert.equal(fs.readFileSync(path.join(dirs.state, "identity.json"), "utf8"), "{}\n");
});

test("provision retires wiped file after redemption", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs, { crashAt: "wipe-boot-file", allowHook: true }).signal, "SIGKILL");
  fs.writeFileSync(path.join(dirs.state, "identity.json"), "{}\n");
  fs.rmSync(path.join(dirs.state, "token.txt"));

  const r = provision(dirs);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.existsSync(dirs.bootFile), false);
});

test("provision finishes a partly wiped file", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs, { crashAt: "write-state-token", allowHook: true }).signal, "SIGKILL");
  // A power cut in the middle of the wipe: the first half is newlines, the rest is the old text.
  const half = Math.floor(FULL_FILE.length / 2);
  fs.writeFileSync(dirs.bootFile, "\n".repeat(half) + FULL_FILE.slice(half));

  const r = provision(dirs);
  assert.equal(r.status, 0, r.stderr);
  assertProvisioned(dirs);
});

test("provision partly wiped file without copy exits 2", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs, { crashAt: "write-state-token", allowHook: true }).signal, "SIGKILL");
  const half = Math.floor(FULL_FILE.length / 2);
  const damaged = "\n".repeat(half) + FULL_FILE.slice(half);
  fs.writeFileSync(dirs.bootFile, damaged);
  // Without the copy nothing proves that the token is safe elsewhere.
  fs.rmSync(path.join(dirs.state, "token.txt"));

  const r = provision(dirs);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /cyphonic-token\.txt: /);
  assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), damaged);
});

test("provision second token before identity", (t) => {
  const dirs = setup(t);
  assert.equal(provision(dirs).status, 0);
  // The first token expired before the adapter redeemed it, and the user drops only the operator's new file.
  fs.writeFileSync(dirs.bootFile, [...tokenLines("Second-Token_0123456789"), ""].join("\n"));
  const second = provision(dirs);
  assert.equal(second.status, 0, second.stderr);
  assert.equal(fs.readFileSync(path.join(dirs.state, "token.txt"), "utf8"), expectedStateToken("Second-Token_0123456789"));
  assert.equal(readRoot(dirs, "wan"), EXPECTED_ROOT.wan, "absent network fields keep the static WAN");
  assert.equal(readRoot(dirs, "config"), EXPECTED_ROOT.config);

  fs.writeFileSync(dirs.bootFile, [...tokenLines("Third-Token_0123456789"), "wan_mode=dhcp", ""].join("\n"));
  const third = provision(dirs);
  assert.equal(third.status, 0, third.stderr);
  assert.equal(readRoot(dirs, "wan"), overlayText(ROOT_FILES.wan).replace("interface-name=eth0", "interface-name=eth1"), "dhcp again, on the swapped port");
  assert.equal(fs.readFileSync(path.join(dirs.state, "token.txt"), "utf8"), expectedStateToken("Third-Token_0123456789"));
  assert.equal(fs.existsSync(dirs.bootFile), false);
});

test("provision one port onto the other", (t) => {
  const dirs = setup(t, [...tokenLines(SECRET), "wan_interface=eth1", ""].join("\n"));
  const r = provision(dirs);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /line 5: wan_interface is eth1, which is the LAN port now; add the line lan_interface=eth0 to swap the ports/);
  assert.equal(readRoot(dirs, "wan"), overlayText(ROOT_FILES.wan));
});

test("provision falls back to the second boot dir", (t) => {
  const dirs = setup(t, null);
  const oldLayout = path.join(path.dirname(dirs.boot), "boot");
  fs.mkdirSync(oldLayout);
  fs.writeFileSync(path.join(oldLayout, "cyphonic-token.txt"), FULL_FILE);
  const r = provision(dirs, { boot: [path.join(dirs.boot, "firmware"), oldLayout] });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(fs.readdirSync(oldLayout), []);
  assert.equal(fs.readFileSync(path.join(dirs.state, "token.txt"), "utf8"), expectedStateToken(SECRET));
});

test("provision ignores crash hook without flag", (t) => {
  const dirs = setup(t);
  const r = provision(dirs, { crashAt: "write-state-token" });
  assert.equal(r.signal, null);
  assert.equal(r.status, 0, r.stderr);
  assertProvisioned(dirs);
});

test("provision rejects unknown crash step", (t) => {
  const dirs = setup(t);
  const r = provision(dirs, { crashAt: "write-everything", allowHook: true });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /CYPHONIC_PROVISION_CRASH_AT must be one of remove-stale-temp-files, .*delete-boot-file, got "write-everything"/);
  assert.equal(fs.readFileSync(dirs.bootFile, "utf8"), FULL_FILE);
});

test("provision deletes stale temp files", (t) => {
  const dirs = setup(t);
  const stateTemp = path.join(dirs.state, ".token.txt.4242.tmp");
  const wanTemp = path.join(dirs.root, CONNECTIONS, ".cyphonic-wan.nmconnection.4242.tmp");
  const unrelated = path.join(dirs.state, ".notes.4242.tmp");
  fs.writeFileSync(stateTemp, expectedStateToken("Old-Token_0123456789"));
  fs.writeFileSync(wanTemp, "[connection]\n");
  fs.writeFileSync(unrelated, "not ours\n");

  const r = provision(dirs);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.existsSync(stateTemp), false, "the temporary copy of a token stayed");
  assert.equal(fs.existsSync(wanTemp), false);
  assert.equal(fs.existsSync(unrelated), true, "a file of another program was deleted");
});
