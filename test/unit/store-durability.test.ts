import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { TEST_CONFIG, makeTempDir } from "./fixtures/store-helpers.js";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";

const REPO_ROOT = join(__dirname, "..", "..");
const WRITER = join(__dirname, "fixtures", "store-crash-writer.ts");
/** Committed redemptions to wait for before the kill. */
const KILL_AFTER_COMMITS = 100;

// SIGKILL stops the process without any cleanup, but the kernel keeps its
// written pages, so this checks crash consistency of the process, not
// durability across power loss.
test("SIGKILL keeps every committed redemption", { timeout: 120_000 }, async (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const child = spawn(process.execPath, ["--import", "tsx", WRITER, path], {
    cwd: REPO_ROOT,
    env: { ...process.env, CYPHONIC_LOG_LEVEL: "silent" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));

  const committed = new Map<number, string>();
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (line) => {
    const match = /^committed (\d+) (\S+)$/.exec(line);
    if (!match) return;
    committed.set(Number(match[1]), match[2] as string);
    if (committed.size === KILL_AFTER_COMMITS) child.kill("SIGKILL");
  });
  const [exitCode, signal] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, "SIGKILL", `writer exited with code ${exitCode} before the kill: ${stderr}`);
  assert.ok(committed.size >= KILL_AFTER_COMMITS, `only ${committed.size} commits were printed`);

  const raw = new Database(path);
  try {
    assert.equal(raw.pragma("integrity_check", { simple: true }), "ok");
    assert.deepEqual(raw.pragma("foreign_key_check"), []);
  } finally {
    raw.close();
  }

  const store = new CloudStore(path, TEST_CONFIG);
  t.after(() => store.close());
  for (const [id, keyBase64] of committed) {
    const node = store.getNodeById(id);
    assert.ok(node, `committed node ${id} is missing`);
    assert.equal(node.publicKey?.toString("base64"), keyBase64, `key of node ${id}`);
  }
});
