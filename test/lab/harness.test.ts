// Checks the harness's process handling: exec results and timeouts, line
// waiting, and that processes and namespaces go away on down(), on an
// uncaught exception and on SIGINT. Needs root.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Lab } from "./harness.js";

const HARNESS_PATH = path.join(__dirname, "harness.ts");
const TEST_TIMEOUT_MS = 60_000;

function labNamespaces(prefix: string): string[] {
  const listing = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  return listing
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(`${prefix}-`));
}

// A zombie counts as dead: a killed process whose parent already exited is
// reparented to PID 1, which may not reap it at once (or, in some sandboxes, ever).
function isAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  // The state letter follows the parenthesised command name (proc(5)).
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

describe("lab harness", { timeout: TEST_TIMEOUT_MS }, () => {
  let lab: Lab;

  before(async () => {
    lab = await Lab.up();
  });

  after(async () => {
    await lab?.down();
  });

  test("exec returns code and output", async () => {
    const result = await lab.exec("cn2", ["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(result.code, 3);
    assert.equal(result.stdout, "out\n");
    assert.equal(result.stderr, "err\n");
  });

  test("exec runs inside the namespace", async () => {
    const result = await lab.exec("cn1", ["ip", "-4", "-o", "addr", "show", "dev", lab.iface.cn1]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`inet ${lab.addr.cn1.replaceAll(".", "\\.")}/`));
  });

  test("exec rejects after timeout", async () => {
    const started = Date.now();
    await assert.rejects(lab.exec("cloud", ["sleep", "30"], { timeoutMs: 300 }), /timed out after 300 ms/);
    assert.ok(Date.now() - started < 5000, "exec took too long to give up");
  });

  test("exec reports a signal as 128 + number", async () => {
    const result = await lab.exec("cloud", ["sh", "-c", "kill -TERM $$"]);
    assert.equal(result.code, 128 + 15);
  });

  test("waitForLine sees earlier and later lines", async () => {
    const child = lab.spawn("cloud", ["sh", "-c", "echo first; sleep 0.3; echo second; sleep 30"]);
    assert.equal(await child.waitForLine(/second/, 5000), "second");
    assert.equal(await child.waitForLine(/first/, 100), "first");
    await assert.rejects(child.waitForLine(/never/, 100), /timed out after 100 ms/);
    await child.kill();
    assert.equal(await child.exited, null);
  });

  test("waitForLine rejects when process ends", async () => {
    const child = lab.spawn("cloud", ["sh", "-c", "echo only; exit 4"]);
    await assert.rejects(child.waitForLine(/missing/, 5000), /ended before printing/);
    assert.equal(await child.exited, 4);
    assert.equal(child.output(), "only\n");
  });

  test("spawn passes env and writes the log file", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lab-log-"));
    try {
      const logFile = path.join(dir, "child.log");
      const child = lab.spawn("cn2", ["sh", "-c", 'echo "value=$LAB_TEST_VALUE"'], { logFile, env: { LAB_TEST_VALUE: "42" } });
      assert.equal(await child.exited, 0);
      await child.waitForLine(/value=/, 1000);
      // The log stream is flushed asynchronously after the process ends.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(readFileSync(logFile, "utf8"), "value=42\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("kill escalates to SIGKILL", async () => {
    const child = lab.spawn("cn2", ["sh", "-c", 'trap "" TERM; echo ready; while :; do sleep 1; done']);
    await child.waitForLine(/ready/, 5000);
    const started = Date.now();
    await child.kill();
    assert.equal(await child.exited, null);
    assert.ok(Date.now() - started >= 1500, "kill returned before the grace period");
    assert.equal(isAlive(child.pid), false);
  });
});

test("down kills tracked processes", { timeout: TEST_TIMEOUT_MS }, async () => {
  const lab = await Lab.up();
  const plain = lab.spawn("cn2", ["sleep", "60"]);
  const stubborn = lab.spawn("cloud", ["sh", "-c", 'trap "" TERM; echo ready; while :; do sleep 1; done']);
  await stubborn.waitForLine(/ready/, 5000);
  await lab.down();
  assert.equal(await plain.exited, null);
  assert.equal(await stubborn.exited, null);
  assert.equal(isAlive(plain.pid), false);
  assert.equal(isAlive(stubborn.pid), false);
  assert.deepEqual(labNamespaces(lab.prefix), []);
  assert.throws(() => lab.spawn("cn2", ["true"]), /is down/);
});

/** Runs a child Node process that brings a lab up, prints its prefix and then does `ending`. */
async function runCrashingChild(ending: string, signal?: NodeJS.Signals): Promise<{ prefix: string; pid: number; code: number | null }> {
  const script = `
    const { Lab } = require(${JSON.stringify(HARNESS_PATH)});
    (async () => {
      const lab = await Lab.up();
      const sleeper = lab.spawn("cn2", ["sleep", "60"]);
      console.log("PID=" + sleeper.pid);
      console.log("PREFIX=" + lab.prefix);
      ${ending}
    })();
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
    if (signal !== undefined && stdout.includes("PREFIX=")) {
      child.kill(signal);
    }
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const [code] = (await once(child, "exit")) as [number | null];
  const prefix = /PREFIX=(\S+)/.exec(stdout)?.[1];
  const pid = Number(/PID=(\d+)/.exec(stdout)?.[1]);
  assert.ok(prefix !== undefined, `child printed no prefix; stderr: ${stderr}`);
  assert.ok(pid > 0, `child printed no process id; stderr: ${stderr}`);
  return { prefix, pid, code };
}

test("uncaught exception tears down the lab", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { prefix, pid, code } = await runCrashingChild('setTimeout(() => { throw new Error("test crash"); }, 10);');
  assert.equal(code, 1);
  assert.deepEqual(labNamespaces(prefix), []);
  assert.equal(isAlive(pid), false);
});

test("SIGINT tears down the lab", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { prefix, pid, code } = await runCrashingChild("setInterval(() => undefined, 1000);", "SIGINT");
  assert.equal(code, 130);
  assert.deepEqual(labNamespaces(prefix), []);
  assert.equal(isAlive(pid), false);
});
