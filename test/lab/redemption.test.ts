// Token redemption by `cyphonic node` against a real `cyphonic cloud`: a
// SIGKILL after each redemption step and a restart, an expired token, a token
// that a second device reuses, and an AS that is down when the node starts.
// The nodes run in cn2, each with its own state directory, TUN name and
// control socket. The test reads the cloud's SQLite database to see which key
// the AS bound to each token.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { keyPairFromPrivate } from "../../firmware/src/protocol/noise.js";
import { CRASH_HOOK_VARIABLE, REDEMPTION_STEPS } from "../../firmware/src/node/provision.js";
import { Lab, LabProcess } from "./harness.js";
import { NamespaceProcess } from "./lab-process.js";
import { CYPHONIC, Overlay, OverlayNode } from "./overlay-fixture.js";

const DAEMON_ENV = { CYPHONIC_LOG_LEVEL: "info" };
/** Long enough for several retries of the node (its first backoff is at most 2 s after a 5 s request timeout). */
const NO_RETRY_WINDOW_MS = 10_000;
/** The request timeout of the node's redemption (REQUEST_TIMEOUT_MS in provision.ts). */
const REDEMPTION_TIMEOUT_MS = 5_000;
/** The first backoff cap and the maximum cap of the node's retries (provision.ts). */
const FIRST_BACKOFF_CAP_MS = 2_000;
const MAX_BACKOFF_MS = 60_000;
/** The node resends an unanswered request every second (RequestTracker), so one attempt sends at most this many copies. */
const COPIES_PER_ATTEMPT = REDEMPTION_TIMEOUT_MS / 1_000;

interface TokenRow {
  node_id: number;
  expires_at: number;
  redeemed_at: number | null;
  redeemed_by_key: Buffer | null;
}

interface NodeRow {
  id: number;
  name: string;
  public_key: Buffer | null;
}

interface LogLine {
  time: string;
  msg: string;
  [field: string]: unknown;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Returns the JSON log lines of `output` whose message is `msg`. Lines that are not JSON (the CLI's error line) are skipped. */
function logLines(output: string, msg: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of output.split("\n")) {
    if (!text.startsWith("{")) continue;
    const line = JSON.parse(text) as LogLine;
    if (line.msg === msg) lines.push(line);
  }
  return lines;
}

/** Returns the signal that ended `child`, or null when it exited with a status. */
function exitSignal(child: LabProcess): NodeJS.Signals | null {
  assert.ok(child instanceof NamespaceProcess, "lab.spawn returns a NamespaceProcess");
  return child.exitSignal;
}

/** Returns the token secret of a token file that `cyphonic admin token create` wrote. */
function tokenSecret(tokenText: string): string {
  const secret = /^token=(.+)$/m.exec(tokenText)?.[1];
  assert.ok(secret, `no token= line in the token file:\n${tokenText}`);
  return secret;
}

function publicKeyOf(privateKeyFile: string): Buffer {
  const privateKey = Buffer.from(fs.readFileSync(privateKeyFile, "utf8").trim(), "base64");
  return keyPairFromPrivate(privateKey).publicKey;
}

describe("token redemption", { timeout: 600_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  /** A number per node, so each gets its own TUN name. */
  let nodeCount = 0;

  before(async () => {
    lab = await Lab.up();
    overlay = new Overlay(lab);
    await overlay.startCloud();
  });

  after(async () => {
    overlay?.cleanup();
    await lab?.down();
  });

  const databaseFile = () => path.join(overlay.cloudState, "cloud.db");

  /** Runs `query` on the cloud's database while the cloud runs. WAL mode lets this connection read and write beside it. */
  function withDatabase<T>(query: (db: Database.Database) => T): T {
    const db = new Database(databaseFile(), { fileMustExist: true, timeout: 5_000 });
    try {
      return query(db);
    } finally {
      db.close();
    }
  }

  function tokenRow(secret: string): TokenRow {
    const hash = createHash("sha256").update(secret, "utf8").digest();
    const row = withDatabase((db) => db.prepare("SELECT node_id, expires_at, redeemed_at, redeemed_by_key FROM tokens WHERE hash = ?").get(hash) as TokenRow | undefined);
    assert.ok(row, "the cloud database has the token");
    return row;
  }

  function nodeRows(): NodeRow[] {
    return withDatabase((db) => db.prepare("SELECT id, name, public_key FROM nodes ORDER BY id").all() as NodeRow[]);
  }

  /** Creates node `name` in the cloud and issues its token file. Returns the node, not started, and the token file's text. */
  async function createNode(name: string): Promise<{ node: OverlayNode; tokenFile: string; tokenText: string; nodeId: number }> {
    await overlay.admin("node", "add", name);
    const fields = (await overlay.admin("node", "list"))
      .split("\n")
      .map((line) => line.split("\t"))
      .find((f) => f[1]?.startsWith(`${name}.`));
    const [id, fqdn, virtualIP] = fields ?? [];
    assert.ok(id, `node ${name} is in the node list`);
    assert.ok(fqdn, `node ${name} has an FQDN`);
    assert.ok(virtualIP, `node ${name} has a virtual IP`);
    const tokenFile = path.join(overlay.dir, `${name}.token`);
    await overlay.admin("token", "create", name, "--as-endpoint", `${lab.addr.cloud}:7400`, "--out", tokenFile);
    const node: OverlayNode = {
      host: "cn2",
      name,
      fqdn,
      virtualIP,
      stateDir: path.join(overlay.dir, name),
      control: path.join(overlay.dir, `${name}.sock`),
      process: undefined as unknown as LabProcess,
    };
    overlay.nodes.set(name, node);
    const nodeRow = nodeRows().find((row) => row.name === name);
    assert.ok(nodeRow, `node ${name} is in the cloud database`);
    return { node, tokenFile, tokenText: fs.readFileSync(tokenFile, "utf8"), nodeId: nodeRow.id };
  }

  /** Starts `cyphonic node` for `node` in cn2 with its own TUN name and any free UDP port. */
  function startNode(node: OverlayNode, tokenFile: string, opts: { extraArgs?: string[]; env?: Record<string, string> } = {}): LabProcess {
    nodeCount += 1;
    const args = ["node", CYPHONIC, "node", "--state", node.stateDir, "--control", node.control, "--tun", `cyr${nodeCount}`, "--port", "0", "--token-file", tokenFile];
    node.process = lab.spawn(node.host, [...args, ...(opts.extraArgs ?? [])], {
      logFile: path.join(overlay.dir, `${node.name}.log`),
      env: { ...DAEMON_ENV, ...opts.env },
    });
    return node.process;
  }

  async function stopNode(node: OverlayNode): Promise<void> {
    await node.process.kill("SIGTERM");
    await node.process.exited;
  }

  /** Returns the store's log lines for tokens of node `nodeId` that it marked redeemed, which it does once per token. */
  const bindingsOf = (nodeId: number) => logLines(overlay.cloud.output(), "redeemed provisioning token").filter((line) => line.node === nodeId);
  /** Returns the AS's log lines for redemption requests of node `nodeId` that it accepted, including repeats by the same key. */
  const acceptedRedemptionsOf = (nodeId: number) => logLines(overlay.cloud.output(), "token redeemed").filter((line) => line.node === nodeId);
  /** Returns the cloud's log lines for rejected redemptions with `reason`. */
  const rejections = (reason: string) => logLines(overlay.cloud.output(), "token redemption rejected").filter((line) => line.reason === reason);

  test("invalid crash step is a usage error", async () => {
    const stateDir = path.join(overlay.dir, "bad-step");
    const args = ["node", CYPHONIC, "node", "--state", stateDir, "--control", path.join(overlay.dir, "bad-step.sock"), "--allow-crash-hook"];
    const env = `${CRASH_HOOK_VARIABLE}=no-such-step`;
    const result = await lab.exec("cn2", ["env", env, ...args]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, new RegExp(`${CRASH_HOOK_VARIABLE} must be one of ${REDEMPTION_STEPS.join(", ")}, got "no-such-step"`));
    assert.equal(fs.existsSync(stateDir), false, "the node stopped before it wrote a key");
  });

  for (const [index, step] of REDEMPTION_STEPS.entries()) {
    describe(`crash after ${step}`, () => {
      const name = `crash${index + 1}`;
      let node: OverlayNode;
      let nodeId: number;
      let secret: string;
      let tokenFile: string;
      let crashed: LabProcess;
      let keyAtCrash: Buffer;
      let tokenAtCrash: TokenRow;
      let identityAtCrash: boolean;
      let tokenFileAtCrash: boolean;
      let nodesBefore: number;
      let restarted: LabProcess;

      before(async () => {
        const created = await createNode(name);
        node = created.node;
        nodeId = created.nodeId;
        tokenFile = created.tokenFile;
        secret = tokenSecret(created.tokenText);
        nodesBefore = nodeRows().length;

        crashed = startNode(node, tokenFile, { extraArgs: ["--allow-crash-hook"], env: { [CRASH_HOOK_VARIABLE]: step } });
        await crashed.exited;
        keyAtCrash = fs.readFileSync(path.join(node.stateDir, "private.key"));
        tokenAtCrash = tokenRow(secret);
        identityAtCrash = fs.existsSync(path.join(node.stateDir, "identity.json"));
        tokenFileAtCrash = fs.existsSync(tokenFile);

        // The restart keeps the variable but not --allow-crash-hook, so it also shows that the variable alone does nothing.
        restarted = startNode(node, tokenFile, { env: { [CRASH_HOOK_VARIABLE]: step } });
        await restarted.waitForLine(/"registered with NMS"/, 30_000);
      });

      after(async () => {
        if (node?.process) await stopNode(node);
      });

      test("hook kills the node by SIGKILL", () => {
        assert.equal(exitSignal(crashed), "SIGKILL");
        assert.equal(logLines(crashed.output(), "provisioned").length, 0, "the node did not finish provisioning before the crash");
      });

      test("state at the crash matches the step", () => {
        const stepIndex = REDEMPTION_STEPS.indexOf(step);
        const redeemed = stepIndex >= REDEMPTION_STEPS.indexOf("as-answered");
        assert.equal(Buffer.from(keyAtCrash.toString("utf8").trim(), "base64").length, 32, "private.key contains a 32-byte key");
        assert.equal(tokenAtCrash.redeemed_at !== null, redeemed, "the AS redeemed the token before the crash");
        assert.equal(identityAtCrash, stepIndex >= REDEMPTION_STEPS.indexOf("identity-saved"), "identity.json exists after the crash");
        assert.equal(tokenFileAtCrash, true, "the token file exists after the crash");
      });

      test("restart ignores the variable without the flag", () => {
        const warnings = logLines(restarted.output(), "ignoring the crash test hook, because --allow-crash-hook is not set");
        assert.equal(warnings.length, 1);
        assert.equal(warnings[0]!.variable, CRASH_HOOK_VARIABLE);
      });

      test("exactly one identity.json", () => {
        const files = fs.readdirSync(node.stateDir).sort();
        assert.deepEqual(
          files.filter((f) => f.includes("identity")),
          ["identity.json"],
          "no second identity file and no temporary file",
        );
        const identity = JSON.parse(fs.readFileSync(path.join(node.stateDir, "identity.json"), "utf8")) as { nodeId: number; fqdn: string; virtualIP: string };
        assert.equal(identity.nodeId, nodeId);
        assert.equal(identity.fqdn, node.fqdn);
        assert.equal(identity.virtualIP, node.virtualIP);
      });

      test("private key unchanged across the crash", () => {
        assert.deepEqual(fs.readFileSync(path.join(node.stateDir, "private.key")), keyAtCrash);
      });

      test("token file deleted", () => {
        assert.equal(fs.existsSync(tokenFile), false, `${tokenFile} still exists`);
      });

      test("node registered with the NMS", async () => {
        const status = await overlay.status(name);
        assert.equal(status.node?.id, nodeId);
        assert.equal(status.node?.virtualIP, node.virtualIP);
        assert.equal(status.nms?.registered, true);
      });

      test("AS bound the token once to the node's key", () => {
        const publicKey = publicKeyOf(path.join(node.stateDir, "private.key"));
        const token = tokenRow(secret);
        assert.equal(token.node_id, nodeId);
        assert.deepEqual(token.redeemed_by_key, publicKey, "the token is bound to the node's key");
        if (tokenAtCrash.redeemed_at !== null) assert.equal(token.redeemed_at, tokenAtCrash.redeemed_at, "the retry did not redeem the token a second time");
        const rows = nodeRows();
        assert.equal(rows.length, nodesBefore, "no node was created by the redemption");
        const holders = rows.filter((row) => row.public_key?.equals(publicKey));
        assert.deepEqual(
          holders.map((row) => row.id),
          [nodeId],
          "only this node has the key",
        );
        assert.equal(bindingsOf(nodeId).length, 1, "the store bound the token once");
        // The AS accepts a repeated redemption with the same key again, so a
        // crash after as-answered shows two accepted requests for one binding.
        const answers = step === "as-answered" ? 2 : 1;
        assert.equal(acceptedRedemptionsOf(nodeId).length, answers, "redemptions that the AS answered");
      });
    });
  }

  test("expired token is rejected without retries", async () => {
    const { node, tokenFile, tokenText } = await createNode("expired");
    const secret = tokenSecret(tokenText);
    // The CLI's shortest lifetime is 1 h, so the test moves the expiry into the past in the database.
    const hash = createHash("sha256").update(secret, "utf8").digest();
    const changed = withDatabase((db) => db.prepare("UPDATE tokens SET expires_at = ? WHERE hash = ?").run(Date.now() - 60_000, hash).changes);
    assert.equal(changed, 1);
    const rejectionsBefore = rejections("token_expired").length;

    const child = startNode(node, tokenFile);
    const exitCode = await child.exited;
    await delay(NO_RETRY_WINDOW_MS);

    assert.equal(exitCode, 2, "a rejected token is an error that a restart cannot fix");
    const fatal = logLines(child.output(), "fatal error");
    assert.equal(fatal.length, 1, "one log line for the rejection");
    assert.match(JSON.stringify(fatal[0]), /token_expired/);
    assert.match(child.output(), /^cyphonic: the AS rejected the token \(token_expired\)/m);
    assert.equal(logLines(child.output(), "no response from the AS, retrying").length, 0, "no retry");
    assert.equal(rejections("token_expired").length - rejectionsBefore, 1, "the AS saw one redemption");
    assert.equal(fs.existsSync(tokenFile), true, "a rejected token file is kept");
    assert.equal(fs.existsSync(path.join(node.stateDir, "identity.json")), false);
    assert.equal(tokenRow(secret).redeemed_at, null, "the token stays unredeemed");
  });

  test("token reused by a second device is rejected", async () => {
    const { node: first, tokenFile, tokenText, nodeId } = await createNode("reuse-a");
    const secret = tokenSecret(tokenText);
    await startNode(first, tokenFile).waitForLine(/"registered with NMS"/, 30_000);
    const identityFile = path.join(first.stateDir, "identity.json");
    const identityBefore = fs.readFileSync(identityFile);
    const firstKey = publicKeyOf(path.join(first.stateDir, "private.key"));
    const nodesBefore = nodeRows().length;
    const rejectionsBefore = rejections("token_reused").length;

    // The second device has its own state directory, so its own key, and a copy of the same token file.
    const second: OverlayNode = { ...first, name: "reuse-b", stateDir: path.join(overlay.dir, "reuse-b"), control: path.join(overlay.dir, "reuse-b.sock") };
    const copy = path.join(overlay.dir, "reuse-b.token");
    fs.writeFileSync(copy, tokenText, { mode: 0o600 });
    const child = startNode(second, copy);
    const exitCode = await child.exited;
    await delay(NO_RETRY_WINDOW_MS);

    assert.equal(exitCode, 2);
    const fatal = logLines(child.output(), "fatal error");
    assert.equal(fatal.length, 1, "one log line for the rejection");
    assert.match(JSON.stringify(fatal[0]), /token_reused/);
    assert.match(child.output(), /^cyphonic: the AS rejected the token \(token_reused\)/m);
    assert.equal(logLines(child.output(), "no response from the AS, retrying").length, 0, "no retry");
    assert.equal(rejections("token_reused").length - rejectionsBefore, 1, "the AS saw one redemption");
    assert.equal(fs.existsSync(path.join(second.stateDir, "identity.json")), false, "the second device has no identity");

    assert.deepEqual(fs.readFileSync(identityFile), identityBefore, "the first node's identity.json is unchanged");
    assert.deepEqual(tokenRow(secret).redeemed_by_key, firstKey, "the token stays bound to the first node's key");
    const rows = nodeRows();
    assert.equal(rows.length, nodesBefore, "no node was created");
    assert.deepEqual(rows.find((row) => row.id === nodeId)?.public_key, firstKey);
    const status = await overlay.status(first.name);
    assert.equal(status.nms?.registered, true, "the first node stays registered");
    assert.equal(status.node?.id, nodeId);
    await stopNode(first);
  });

  // Stops the cloud, so it runs last.
  test("AS down at start, then up", async () => {
    const { node, tokenFile, tokenText, nodeId } = await createNode("late-as");
    const secret = tokenSecret(tokenText);
    await overlay.cloud.kill("SIGTERM");
    assert.equal(await overlay.cloud.exited, 0, "the cloud stopped cleanly");

    const child = startNode(node, tokenFile);
    const retryLines = () => logLines(child.output(), "no response from the AS, retrying");
    // Three retries take at most 3 request timeouts plus backoffs of up to 2 s and 4 s.
    await waitFor("three retries", () => retryLines().length >= 3 || !(child as NamespaceProcess).running, 3 * REDEMPTION_TIMEOUT_MS + 6_000 + 5_000);
    const retries = retryLines();
    assert.equal((child as NamespaceProcess).running, true, `the node keeps running while the AS is down:\n${child.output()}`);
    assert.deepEqual(
      retries.map((line) => line.attempt),
      [1, 2, 3],
    );
    for (const [i, line] of retries.entries()) {
      const cap = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_CAP_MS * 2 ** i);
      const retryInMs = line.retryInMs as number;
      assert.ok(retryInMs >= 0, `retry ${i + 1} waits ${retryInMs} ms, not a negative time`);
      assert.ok(retryInMs <= cap, `retry ${i + 1} waits ${retryInMs} ms, more than its cap of ${cap} ms`);
    }
    for (let i = 1; i < retries.length; i++) {
      // The next attempt starts after the logged backoff, and its failure is logged after the request timeout.
      const gapMs = Date.parse(retries[i]!.time) - Date.parse(retries[i - 1]!.time);
      const expectedMs = (retries[i - 1]!.retryInMs as number) + REDEMPTION_TIMEOUT_MS;
      assert.ok(gapMs >= expectedMs - 50, `retries ${i} and ${i + 1} are ${gapMs} ms apart, expected at least ${expectedMs} ms`);
      assert.ok(gapMs <= expectedMs + 1_000, `retries ${i} and ${i + 1} are ${gapMs} ms apart, expected at most ${expectedMs + 1_000} ms`);
    }

    await overlay.startCloud();
    // The fourth attempt starts within 8 s, and if it times out before the AS is up, the fifth starts within 16 s more.
    await child.waitForLine(/"registered with NMS"/, 40_000);

    const publicKey = publicKeyOf(path.join(node.stateDir, "private.key"));
    assert.deepEqual(tokenRow(secret).redeemed_by_key, publicKey, "the token is bound to the node's key");
    assert.equal(bindingsOf(nodeId).length, 1, "the store bound the token once");
    // Only copies of the last attempt reach the AS, because the node drops those of the attempts that timed out.
    const accepted = acceptedRedemptionsOf(nodeId).length;
    assert.ok(accepted >= 1, "the AS accepted the request");
    assert.ok(accepted <= COPIES_PER_ATTEMPT, `the AS accepted ${accepted} copies of the request, expected at most ${COPIES_PER_ATTEMPT}`);
    assert.equal(fs.existsSync(tokenFile), false, "the token file is deleted");
    assert.equal(JSON.parse(fs.readFileSync(path.join(node.stateDir, "identity.json"), "utf8")).nodeId, nodeId);
    const status = await overlay.status(node.name);
    assert.equal(status.nms?.registered, true);
    await stopNode(node);
  });
});
