// The adapter's configuration: the JSON file, the flags that override it,
// and the error messages, which must name the file, the key or flag, and the
// value expected.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  AdapterConfigError,
  AdapterSettings,
  mergeAdapterConfig,
  parseAdapterConfigText,
  parseAdapterFlags,
  readAdapterConfigFile,
} from "../../firmware/src/appliance/config/index.js";
import { loadAdapterSettings } from "../../firmware/src/cli/adapter-command.js";
import { UsageError } from "../../firmware/src/cli/common.js";

const MAIN = path.resolve("firmware/src/cli/main.ts");
const OVERLAY_CONFIG = path.resolve("overlay/etc/cyphonic/adapter.json");
const FILE = "/etc/cyphonic/adapter.json";

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "cyphonic-config-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Returns the AdapterConfigError that parsing `document` as the file's text throws. */
function fileError(document: unknown): AdapterConfigError {
  try {
    parseAdapterConfigText(JSON.stringify(document), FILE);
  } catch (err) {
    assert.ok(err instanceof AdapterConfigError, `expected an AdapterConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`${JSON.stringify(document)} was accepted`);
}

test("overlay config loads with defaults", () => {
  const settings = mergeAdapterConfig(readAdapterConfigFile(OVERLAY_CONFIG), OVERLAY_CONFIG, {});
  const expected: AdapterSettings = {
    stateDir: "/var/lib/cyphonic",
    tokenFile: "/var/lib/cyphonic/token.txt",
    lanInterface: "eth1",
    port: 7000,
    tunName: "cyph0",
    controlSocket: "/run/cyphonic/node.sock",
    dnsListen: "virtual-ip",
    dnsUpstream: null,
    leaseSeconds: 3600,
    ledRoot: "/sys/class/leds",
    logLevel: "info",
  };
  assert.deepEqual(settings, expected);
});

test("flags override file keys", () => {
  const fromFile = parseAdapterConfigText(
    JSON.stringify({ stateDir: "/var/lib/cyphonic", lanInterface: "eth1", port: 7000, leaseSeconds: 3600, dnsUpstream: null, ledRoot: "/sys/class/leds" }),
    FILE,
  );
  const fromFlags = parseAdapterFlags({ lan: "eth2", port: "7100", "lease-seconds": "120", "dns-upstream": "192.0.2.53:53", "dns-listen": ["127.0.0.1:5353", "[::1]:5353"] });
  const settings = mergeAdapterConfig(fromFile, FILE, fromFlags);
  assert.equal(settings.lanInterface, "eth2");
  assert.equal(settings.port, 7100);
  assert.equal(settings.leaseSeconds, 120);
  assert.deepEqual(settings.dnsUpstream, { address: "192.0.2.53", port: 53 });
  assert.deepEqual(settings.dnsListen, [
    { address: "127.0.0.1", port: 5353 },
    { address: "::1", port: 5353 },
  ]);
  assert.equal(settings.stateDir, "/var/lib/cyphonic", "a key without a flag keeps the file's value");
  assert.equal(settings.ledRoot, "/sys/class/leds");
});

test("flags alone take defaults", () => {
  const settings = mergeAdapterConfig(null, null, parseAdapterFlags({ state: "/tmp/state", lan: "lan0" }));
  assert.deepEqual(settings, {
    stateDir: "/tmp/state",
    tokenFile: null,
    lanInterface: "lan0",
    port: 7000,
    tunName: "cyph0",
    controlSocket: "/run/cyphonic/node.sock",
    dnsListen: "virtual-ip",
    dnsUpstream: null,
    leaseSeconds: 3600,
    ledRoot: "/sys/class/leds",
    logLevel: "info",
  });
});

test("file null clears tokenFile", () => {
  const settings = mergeAdapterConfig(parseAdapterConfigText('{"stateDir": "/s", "lanInterface": "eth1", "tokenFile": null}', FILE), FILE, {});
  assert.equal(settings.tokenFile, null);
  const withFlag = mergeAdapterConfig(parseAdapterConfigText('{"stateDir": "/s", "lanInterface": "eth1", "tokenFile": null}', FILE), FILE, parseAdapterFlags({ "token-file": "/s/t.txt" }));
  assert.equal(withFlag.tokenFile, "/s/t.txt");
});

test("unknown key suggests the valid one", () => {
  const err = fileError({ stateDir: "/s", lanInterfce: "eth1" });
  assert.equal(err.field, "lanInterfce");
  assert.equal(err.file, FILE);
  assert.match(err.message, /^\/etc\/cyphonic\/adapter\.json: unknown key "lanInterfce"; did you mean "lanInterface"\? remove it, the valid keys are stateDir, tokenFile, lanInterface, /);
});

test("unknown key without a close match", () => {
  const err = fileError({ colour: "green" });
  assert.equal(err.field, "colour");
  assert.match(err.message, /: unknown key "colour"; remove it, the valid keys are stateDir, /);
});

test("unknown key matches case-insensitively", () => {
  assert.match(fileError({ LEDROOT: "/x" }).message, /did you mean "ledRoot"\?/);
});

const INVALID_VALUES: Array<{ document: Record<string, unknown>; message: RegExp }> = [
  { document: { port: "7000" }, message: /"port" must be a UDP port, a whole number from 0 to 65535 \(0 picks any free port\), got "7000"$/ },
  { document: { port: 70000 }, message: /"port" must be a UDP port, .*, got 70000$/ },
  { document: { port: 1.5 }, message: /"port" must be a UDP port, .*, got 1\.5$/ },
  { document: { leaseSeconds: 5 }, message: /"leaseSeconds" must be a whole number of seconds from 10 to 604800, got 5$/ },
  { document: { lanInterface: "eth 1" }, message: /"lanInterface" must be an interface name of 1 to 15 letters, digits, '_', '\.' or '-', such as eth1, got "eth 1"$/ },
  { document: { lanInterface: "" }, message: /"lanInterface" must be an interface name .*, got ""$/ },
  { document: { lanInterface: "a-very-long-ifname" }, message: /"lanInterface" must be an interface name .*, got "a-very-long-ifname"$/ },
  { document: { tunName: ".." }, message: /"tunName" must be an interface name .*such as cyph0, got "\.\."$/ },
  { document: { dnsListen: [] }, message: /"dnsListen" must be a non-empty array of "ADDRESS:PORT" strings such as \["127\.0\.0\.1:53"\], got an array \[\]$/ },
  { document: { dnsListen: ["127.0.0.1:53", "127.0.0.1"] }, message: /"dnsListen"\[1\] must be ADDRESS:PORT or \[IPv6\]:PORT with a port from 1 to 65535, got "127\.0\.0\.1"$/ },
  { document: { dnsListen: "127.0.0.1:53" }, message: /"dnsListen" must be a non-empty array .*, got "127\.0\.0\.1:53"$/ },
  { document: { dnsUpstream: "dns.example:53" }, message: /"dnsUpstream" must be ADDRESS:PORT or \[IPv6\]:PORT with a port from 1 to 65535, or null for none, got "dns\.example:53"$/ },
  { document: { logLevel: "verbose" }, message: /"logLevel" must be one of fatal, error, warn, info, debug, trace, got "verbose"$/ },
  { document: { stateDir: "" }, message: /"stateDir" must be the state directory, a non-empty path such as \/var\/lib\/cyphonic, got ""$/ },
  { document: { tokenFile: 5 }, message: /"tokenFile" must be the provisioning token file, a non-empty path, or null for none, got 5$/ },
  { document: { ledRoot: null }, message: /"ledRoot" must be the LED class directory, a non-empty path such as \/sys\/class\/leds, got null$/ },
  { document: { controlSocket: {} }, message: /"controlSocket" must be the control socket, .*, got an object$/ },
];

test("invalid values name key, expectation, value", () => {
  for (const { document, message } of INVALID_VALUES) {
    const err = fileError(document);
    assert.match(err.message, /^\/etc\/cyphonic\/adapter\.json: /, JSON.stringify(document));
    assert.match(err.message, message, JSON.stringify(document));
    assert.equal(err.field, Object.keys(document)[0], JSON.stringify(document));
  }
});

test("invalid JSON names the file", () => {
  assert.throws(
    () => parseAdapterConfigText('{"lanInterface": "eth1",}', FILE),
    (err: unknown) => {
      assert.ok(err instanceof AdapterConfigError);
      assert.equal(err.field, null);
      assert.match(err.message, /^\/etc\/cyphonic\/adapter\.json: invalid JSON at line 1, column 25: .+; check the quotes and commas \(JSON allows no comments and no comma after the last entry\)$/);
      return true;
    },
  );
});

test("invalid JSON on a later line", () => {
  assert.throws(() => parseAdapterConfigText('{\n  "stateDir": "/s",\n  "port": 7000 // tunnels\n}\n', FILE), /: invalid JSON at line 3, column 16: /);
});

test("top level must be an object", () => {
  assert.match(fileError([]).message, /^\/etc\/cyphonic\/adapter\.json: expected one JSON object such as \{"lanInterface": "eth1"\}, got an array \[\]$/);
  assert.match(fileError("eth1").message, /expected one JSON object .*, got "eth1"$/);
  assert.match(fileError(null).message, /expected one JSON object .*, got null$/);
});

test("missing file names the flag", (t) => {
  const file = path.join(tempDir(t), "absent.json");
  assert.throws(() => readAdapterConfigFile(file), (err: unknown) => {
    assert.ok(err instanceof AdapterConfigError);
    assert.equal(err.file, file);
    assert.match(err.message, /: cannot read the configuration file: ENOENT.*; pass the path of an existing file to --config$/);
    return true;
  });
});

test("required keys missing from file", () => {
  const fromFile = parseAdapterConfigText('{"stateDir": "/var/lib/cyphonic"}', FILE);
  assert.throws(
    () => mergeAdapterConfig(fromFile, FILE, {}),
    /^AdapterConfigError: \/etc\/cyphonic\/adapter\.json: "lanInterface" is missing \(the NIC the general nodes are plugged into\); set it there or pass --lan IFACE$/,
  );
  assert.equal(mergeAdapterConfig(fromFile, FILE, parseAdapterFlags({ lan: "eth1" })).lanInterface, "eth1", "a flag supplies the missing key");
  assert.throws(() => mergeAdapterConfig(parseAdapterConfigText("{}", FILE), FILE, {}), /"stateDir" is missing \(the state directory: identity, keys and leases\); set it there or pass --state DIR$/);
});

test("required flags missing without file", () => {
  assert.throws(() => mergeAdapterConfig(null, null, parseAdapterFlags({ lan: "eth1" })), /^AdapterConfigError: --state DIR is required \(.*\); pass it, or set "stateDir" in a --config file$/);
  assert.throws(() => mergeAdapterConfig(null, null, parseAdapterFlags({ state: "/s" })), /^AdapterConfigError: --lan IFACE is required \(the NIC the general nodes are plugged into\); pass it, or set "lanInterface" in a --config file$/);
});

test("flag errors name the flag", () => {
  const cases: Array<[Parameters<typeof parseAdapterFlags>[0], RegExp]> = [
    [{ port: "abc" }, /^--port must be a UDP port, .*, got "abc"$/],
    [{ port: "65536" }, /^--port must be a UDP port, .*, got 65536$/],
    [{ "lease-seconds": "5" }, /^--lease-seconds must be a whole number of seconds from 10 to 604800, got 5$/],
    [{ "lease-seconds": "-60" }, /^--lease-seconds must be .*, got "-60"$/],
    [{ "dns-listen": ["127.0.0.1:53", "nowhere"] }, /^--dns-listen must be ADDRESS:PORT or \[IPv6\]:PORT with a port from 1 to 65535, got "nowhere"$/],
    [{ "dns-upstream": "192.0.2.53" }, /^--dns-upstream must be ADDRESS:PORT .*, got "192\.0\.2\.53"$/],
    [{ lan: "eth1;drop" }, /^--lan must be an interface name .*, got "eth1;drop"$/],
    [{ "log-level": "loud" }, /^--log-level must be one of fatal, error, warn, info, debug, trace, got "loud"$/],
  ];
  for (const [flags, message] of cases) {
    assert.throws(
      () => parseAdapterFlags(flags),
      (err: unknown) => {
        assert.ok(err instanceof AdapterConfigError, JSON.stringify(flags));
        assert.equal(err.file, null);
        assert.match(err.message, message);
        return true;
      },
      JSON.stringify(flags),
    );
  }
});

test("command flag error carries usage", () => {
  assert.throws(
    () => loadAdapterSettings(["--state", "/s", "--lan", "eth1", "--port", "x"]),
    (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /^--port must be/);
      assert.match(err.usage, /^cyphonic adapter --config FILE/);
      return true;
    },
  );
});

test("command reads config and flags", (t) => {
  const file = path.join(tempDir(t), "adapter.json");
  fs.writeFileSync(file, JSON.stringify({ stateDir: "/var/lib/cyphonic", lanInterface: "eth1", logLevel: "warn" }));
  const settings = loadAdapterSettings(["--config", file, "--lan", "eth9", "--led-root", "/tmp/leds"]);
  assert.equal(settings.lanInterface, "eth9");
  assert.equal(settings.ledRoot, "/tmp/leds");
  assert.equal(settings.logLevel, "warn");
});

test("adapter process rejects bad config", (t) => {
  const file = path.join(tempDir(t), "adapter.json");
  fs.writeFileSync(file, JSON.stringify({ stateDir: "/var/lib/cyphonic", lanInterface: "eth1", leaseSecond: 60 }));
  const run = spawnSync(process.execPath, ["--import", "tsx", MAIN, "adapter", "--config", file], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, CYPHONIC_LOG_LEVEL: "silent" },
  });
  assert.equal(run.status, 2, run.stderr);
  assert.equal(run.stderr.split("\n")[0], `cyphonic: ${file}: unknown key "leaseSecond"; did you mean "leaseSeconds"? remove it, the valid keys are stateDir, tokenFile, lanInterface, port, tunName, controlSocket, dnsListen, dnsUpstream, leaseSeconds, ledRoot, logLevel`);
});

test("adapter process without --lan prints usage", () => {
  const run = spawnSync(process.execPath, ["--import", "tsx", MAIN, "adapter", "--state", "/nonexistent"], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, CYPHONIC_LOG_LEVEL: "silent" },
  });
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /^cyphonic: --lan IFACE is required/);
  assert.match(run.stderr, /\ncyphonic adapter --config FILE \[options\]\n/);
});
