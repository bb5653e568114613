// `cyphonic status --json` through a pipe: the whole report arrives, however
// long, because the program exits only after stdout has drained.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ControlServer } from "../../firmware/src/util/control-socket.js";
import { logger } from "../../firmware/src/util/log.js";

const MAIN = path.resolve("firmware/src/cli/main.ts");

test("status --json on a pipe delivers a report of 1,000 tunnels whole", { timeout: 20_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cy-status-"));
  const socket = path.join(dir, "node.sock");
  // About 200 KB of JSON, three times a pipe's 64 KiB buffer.
  const tunnels = Array.from({ length: 1_000 }, (_, i) => ({ member: "ad1.cyphonic.internal", fqdn: `peer-${i}.cyphonic.internal`, virtualIP: `100.64.${i >> 8}.${i & 255}`, path: "direct", reason: "both ends public", endpoint: "198.18.0.20:7000", session: true, lastHandshakeMs: 1, bytesSent: i, bytesReceived: i }));
  const report = { node: { id: 1, fqdn: "ad1.cyphonic.internal", virtualIP: "100.64.0.1" }, port: 7000, nms: null, tunnels, counters: {} };
  const server = await ControlServer.start(socket, () => report, logger("test"));
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, "status", "--control", socket, "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    // A slow reader: nothing is read for a second, so the pipe fills up and
    // the rest of the report waits in the program until it drains.
    const chunks: Buffer[] = [];
    child.stdout.pause();
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    await new Promise((r) => setTimeout(r, 1_500));
    const closed = new Promise<void>((resolve) => child.stdout.on("end", resolve));
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stdout.resume();
    const code = await exited;
    await closed;
    assert.equal(code, 0);
    const text = Buffer.concat(chunks).toString("utf8");
    assert.ok(text.length > 3 * 65_536, `only ${text.length} bytes`);
    const parsed = JSON.parse(text) as typeof report;
    assert.equal(parsed.tunnels.length, 1_000);
    assert.equal(parsed.tunnels[999]!.fqdn, "peer-999.cyphonic.internal");
  } finally {
    child.kill("SIGKILL");
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
