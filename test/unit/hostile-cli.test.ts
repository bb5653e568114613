// Bad flags at the first start of a cloud state directory. The settings file
// is written before the flags are validated, so a rejected --domain or --pool
// stays stored, and every later start and admin command fails on it. These
// tests fail until a rejected start leaves the state directory usable.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const MAIN = path.resolve("firmware/src/cli/main.ts");

function cyphonic(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", MAIN, ...args], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, CYPHONIC_LOG_LEVEL: "silent" },
  });
  return { code: r.status, stderr: r.stderr };
}

function stateDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), "cyphonic-hostile-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, "state");
}

const CASES: [string, string[]][] = [
  ["invalid domain", ["--domain", "EVIL..domain"]],
  ["invalid pool", ["--pool", "10.0.0.0/99"]],
];

for (const [name, flags] of CASES) {
  test(`cloud rejected ${name} is not stored`, (t) => {
    const state = stateDir(t);
    // The control socket path is never reached: the start fails on the flag.
    const first = cyphonic("cloud", "--state", state, "--advertise", "127.0.0.1", "--bind", "127.0.0.1", "--control", path.join(state, "c.sock"), ...flags);
    assert.notEqual(first.code, 0, "the invalid flag is rejected");

    assert.equal(existsSync(path.join(state, "settings.json")), false, "the rejected value was stored as a fixed setting");
    const admin = cyphonic("admin", "--state", state, "node", "list");
    assert.equal(admin.code, 2, "admin on a directory no cloud has used is a usage error");
    assert.match(admin.stderr, /no cloud state/);
  });
}
