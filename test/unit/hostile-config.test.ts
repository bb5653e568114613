// Hostile adapter configuration files: each must end in an AdapterConfigError
// that names the file and the key, never in another exception or a setting
// that fails later without naming its key.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  AdapterConfigError,
  mergeAdapterConfig,
  parseAdapterConfigText,
  parseAdapterFlags,
  readAdapterConfigFile,
} from "../../firmware/src/appliance/config/index.js";

const MAIN = path.resolve("firmware/src/cli/main.ts");
const FILE = "/etc/cyphonic/adapter.json";
const VALID = { stateDir: "/var/lib/cyphonic", lanInterface: "eth1" };
/** Size of sun_path in Linux's struct sockaddr_un. A path of 108 bytes has no room for a terminating NUL, which Linux accepts. */
const SUN_PATH_BYTES = 108;

function tempDir(t: TestContext, prefix = "cyphonic-hostile-config-"): string {
  const dir = fs.mkdtempSync(path.join(tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Returns the AdapterConfigError that parsing text throws, and fails the test on any other outcome. */
function textError(text: string): AdapterConfigError {
  let thrown: unknown = null;
  try {
    parseAdapterConfigText(text, FILE);
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown !== null, `${text.slice(0, 80)} was accepted`);
  assert.ok(thrown instanceof AdapterConfigError, `expected an AdapterConfigError, got ${String(thrown)}`);
  return thrown;
}

function nested(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

test("deep nesting gives a config error", () => {
  // 10,000 levels is a 20 KB file. JSON.parse takes it, but turning the value
  // into the error message must not overflow the stack.
  const inKey = textError(`{"dnsListen": ${nested(10_000)}}`);
  assert.equal(inKey.field, "dnsListen");
  assert.match(inKey.message, /^\/etc\/cyphonic\/adapter\.json: "dnsListen"\[0\] must be /);

  const atTop = textError(nested(10_000));
  assert.equal(atTop.field, null);
  assert.match(atTop.message, /^\/etc\/cyphonic\/adapter\.json: expected one JSON object/);
});

test("adapter process rejects deep nesting", (t) => {
  // Exit status 2 stops systemd from restarting the service (RestartPreventExitStatus=2).
  const file = path.join(tempDir(t), "adapter.json");
  fs.writeFileSync(file, `{"stateDir": "/var/lib/cyphonic", "lanInterface": "eth1", "dnsListen": ${nested(10_000)}}`);
  const run = spawnSync(process.execPath, ["--import", "tsx", MAIN, "adapter", "--config", file], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, CYPHONIC_LOG_LEVEL: "silent" },
  });
  assert.equal(run.status, 2, run.stderr);
  assert.ok(run.stderr.startsWith(`cyphonic: ${file}: "dnsListen"`), run.stderr);
});

test("out-of-range number shows as written", () => {
  // JSON.parse turns 1e999 into Infinity, and JSON.stringify(Infinity) is "null".
  const port = textError('{"port": 1e999}');
  assert.equal(port.field, "port");
  assert.doesNotMatch(port.message, /got null$/, port.message);
  assert.match(port.message, /got (Infinity|1e999)/);

  const lease = textError('{"leaseSeconds": -1e999}');
  assert.equal(lease.field, "leaseSeconds");
  assert.doesNotMatch(lease.message, /got null$/, lease.message);
});

test("byte order mark is ignored", (t) => {
  // Editors on Windows save UTF-8 with a BOM, and Node's require() of a JSON
  // file strips it. RFC 8259 section 8.1 lets a parser ignore it.
  const file = path.join(tempDir(t), "adapter.json");
  fs.writeFileSync(file, "\uFEFF" + JSON.stringify(VALID, null, 2) + "\n");
  let config: ReturnType<typeof readAdapterConfigFile> | null = null;
  try {
    config = readAdapterConfigFile(file);
  } catch (err) {
    assert.fail(`a file that starts with a byte order mark was rejected: ${(err as Error).message}`);
  }
  assert.deepEqual(config, VALID);
});

test("unknown key is quoted safely", () => {
  // A key is printed into the journal, so a newline or an escape sequence in
  // it must not start a line of its own or recolour the terminal.
  const cases = ["x\ncyphonic: configuration is valid", "\u001b[2Jcleared", "tab\there"];
  for (const key of cases) {
    const err = textError(JSON.stringify({ ...VALID, [key]: 1 }));
    assert.equal(err.field, key);
    const controlCharacters = [...err.message].filter((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
    assert.deepEqual(controlCharacters, [], JSON.stringify(err.message));
    assert.ok(err.message.includes(JSON.stringify(key)), `the key should appear JSON-escaped: ${JSON.stringify(err.message)}`);
  }
});

test("NUL byte in a path names the key", () => {
  // The kernel takes a path up to its first NUL byte, and Node's fs functions
  // throw a TypeError for such a path, long after the configuration was read.
  for (const key of ["stateDir", "tokenFile", "controlSocket", "ledRoot"] as const) {
    const err = textError(JSON.stringify({ ...VALID, [key]: "/var/lib/cyphonic\u0000/x" }));
    assert.equal(err.field, key);
    assert.match(err.message, new RegExp(`^/etc/cyphonic/adapter\\.json: "${key}" must be `));
  }
});

test("control socket longer than sun_path", () => {
  // Node.js 20 (libuv 1.46) on Linux cuts a longer path to 108 bytes without
  // an error, so the socket would appear at another path than the configured one.
  const socket = "/run/cyphonic/" + "s".repeat(SUN_PATH_BYTES - "/run/cyphonic/".length + 1);
  assert.equal(Buffer.byteLength(socket), SUN_PATH_BYTES + 1);
  const err = textError(JSON.stringify({ ...VALID, controlSocket: socket }));
  assert.equal(err.field, "controlSocket");

  assert.throws(
    () => parseAdapterFlags({ control: socket }),
    (thrown: unknown) => {
      assert.ok(thrown instanceof AdapterConfigError);
      assert.equal(thrown.field, "--control");
      return true;
    },
  );

  // 107 bytes and a NUL fit on every system.
  const portable = "/run/cyphonic/" + "s".repeat(SUN_PATH_BYTES - 1 - "/run/cyphonic/".length);
  assert.equal(parseAdapterConfigText(JSON.stringify({ controlSocket: portable }), FILE).controlSocket, portable);
});

test("huge dnsListen array fails fast", (t) => {
  // A 4 MB file with a million invalid entries. Only the first error is
  // reported, so validating every entry is wasted time on a small appliance.
  const file = path.join(tempDir(t), "adapter.json");
  fs.writeFileSync(file, JSON.stringify({ ...VALID, dnsListen: new Array<string>(1_000_000).fill("x") }));
  const started = Date.now();
  assert.throws(() => readAdapterConfigFile(file), AdapterConfigError);
  const elapsedMs = Date.now() - started;
  assert.ok(elapsedMs < 3_000, `rejecting the file took ${elapsedMs} ms`);
});

test("prototype keys are unknown keys", () => {
  for (const key of ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf"]) {
    const err = textError(`{"stateDir": "/s", ${JSON.stringify(key)}: {"lanInterface": "eth1", "port": 1}}`);
    assert.equal(err.field, key);
    assert.match(err.message, new RegExp(`: unknown key "${key}"; `));
  }
  const polluted = {} as Record<string, unknown>;
  assert.equal(polluted.lanInterface, undefined, "Object.prototype was changed");
  assert.equal(polluted.port, undefined, "Object.prototype was changed");
});

test("wrong types name the key", () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ port: true }, "port"],
    [{ port: [7000] }, "port"],
    [{ lanInterface: ["eth1"] }, "lanInterface"],
    [{ lanInterface: { name: "eth1" } }, "lanInterface"],
    [{ tunName: 0 }, "tunName"],
    [{ dnsListen: [["127.0.0.1:53"]] }, "dnsListen"],
    [{ dnsListen: [null] }, "dnsListen"],
    [{ dnsUpstream: ["192.0.2.53:53"] }, "dnsUpstream"],
    [{ leaseSeconds: "3600" }, "leaseSeconds"],
    [{ logLevel: 3 }, "logLevel"],
    [{ stateDir: false }, "stateDir"],
  ];
  for (const [document, key] of cases) {
    const err = textError(JSON.stringify(document));
    assert.equal(err.field, key, JSON.stringify(document));
    assert.match(err.message, new RegExp(`^/etc/cyphonic/adapter\\.json: "${key}"(\\[0\\])? must be `), JSON.stringify(document));
  }
});

test("empty or blank file is invalid JSON", () => {
  for (const text of ["", "   \n\t", "\uFEFF"]) {
    const err = textError(text);
    assert.equal(err.field, null);
    assert.match(err.message, /^\/etc\/cyphonic\/adapter\.json: invalid JSON/, JSON.stringify(text));
  }
});

test("odd characters in the file path", (t) => {
  const dir = tempDir(t, "cyphonic config \n ünï'\"$(x)-");
  const file = path.join(dir, "adapter config.json");
  fs.writeFileSync(file, JSON.stringify(VALID));
  assert.deepEqual(readAdapterConfigFile(file), VALID);
  const settings = mergeAdapterConfig(readAdapterConfigFile(file), file, {});
  assert.equal(settings.lanInterface, "eth1");

  const absent = path.join(dir, "absent.json");
  assert.throws(
    () => readAdapterConfigFile(absent),
    (err: unknown) => {
      assert.ok(err instanceof AdapterConfigError);
      assert.equal(err.file, absent);
      assert.match(err.message, /cannot read the configuration file: ENOENT/);
      return true;
    },
  );
  assert.throws(
    () => readAdapterConfigFile(dir),
    (err: unknown) => {
      assert.ok(err instanceof AdapterConfigError);
      assert.match(err.message, /cannot read the configuration file: EISDIR/);
      return true;
    },
  );
});
