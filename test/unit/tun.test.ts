import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { TunDevice, TunError, type TunOptions } from "../../firmware/src/node/tun.js";

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const FIXTURES = path.join(__dirname, "fixtures");
const NAMESPACE = `cytun-${process.pid}-${randomBytes(3).toString("hex")}`;
const TUN_NAME = "cytun0";
const TUN_CIDR = "10.77.0.1/24";
const TUN_MTU_BYTES = 1400;
// An address inside the TUN prefix, so the kernel routes it to the device and the fixture replies.
const PEER_ADDRESS = "10.77.0.9";
const DISCARD_PORT = 9;
// IPv4 and UDP headers take 28 bytes of the MTU.
const MAX_UDP_PAYLOAD_BYTES = TUN_MTU_BYTES - 28;

function namespaceSkipReason(): string | false {
  if (process.getuid?.() !== 0) return "needs root to create a network namespace and a TUN device";
  if (!fs.existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  return false;
}

interface CommandResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command and resolves with its exit status and output, also on failure. */
function run(file: string, args: string[], timeoutMs = 30_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: REPO_ROOT, timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      let exitCode: number | null = 0;
      if (err) exitCode = typeof err.code === "number" ? err.code : null;
      resolve({ exitCode, stdout, stderr });
    });
  });
}

function runInNamespace(args: string[], timeoutMs?: number): Promise<CommandResult> {
  return run("ip", ["netns", "exec", NAMESPACE, ...args], timeoutMs);
}

function fixtureCommand(script: string, args: string[]): string[] {
  return [process.execPath, "--import", "tsx", path.join(FIXTURES, script), ...args];
}

/** Parses the JSON line with "fixture": kind from a fixture's output. */
function fixtureLine(stdout: string, kind: string): Record<string, unknown> {
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const fields = JSON.parse(line) as Record<string, unknown>;
    if (fields.fixture === kind) return fields;
  }
  throw new Error(`no "${kind}" line in fixture output:\n${stdout}`);
}

/** The tun-echo fixture running in the namespace, driven over stdin and stdout. */
class EchoFixture {
  private readonly lines: Array<Record<string, unknown>> = [];
  private waiter: (() => void) | undefined;
  private exited = false;
  readonly output: string[] = [];

  constructor(readonly child: ChildProcess) {
    const stdout = readline.createInterface({ input: child.stdout! });
    stdout.on("line", (line) => {
      this.output.push(line);
      if (!line.startsWith("{")) return;
      const fields = JSON.parse(line) as Record<string, unknown>;
      if (fields.fixture === undefined) return;
      this.lines.push(fields);
      this.waiter?.();
    });
    child.stderr!.on("data", (chunk: Buffer) => this.output.push(chunk.toString()));
    child.on("exit", () => {
      this.exited = true;
      this.waiter?.();
    });
  }

  static start(): EchoFixture {
    const child = spawn("ip", ["netns", "exec", NAMESPACE, ...fixtureCommand("tun-echo.ts", [TUN_NAME, TUN_CIDR, String(TUN_MTU_BYTES)])], {
      cwd: REPO_ROOT,
      env: { ...process.env, CYPHONIC_LOG_LEVEL: "warn" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    return new EchoFixture(child);
  }

  /** Waits for the next fixture line and asserts that its "fixture" field is `kind`. */
  async next(kind: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.exited) throw new Error(`fixture exited while waiting for "${kind}":\n${this.output.join("\n")}`);
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new Error(`timed out waiting for "${kind}" from the fixture:\n${this.output.join("\n")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remainingMs);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const fields = this.lines.shift()!;
    assert.equal(fields.fixture, kind, `expected "${kind}" from the fixture, got ${JSON.stringify(fields)}`);
    return fields;
  }

  async request(command: string, kind: string): Promise<Record<string, unknown>> {
    this.child.stdin!.write(`${command}\n`);
    return this.next(kind);
  }

  /** Polls stats until `done` returns true or the timeout passes, and returns the last stats. */
  async statsWhen(done: (stats: Record<string, unknown>) => boolean, timeoutMs = 5_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let stats = await this.request("stats", "stats");
    while (!done(stats) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      stats = await this.request("stats", "stats");
    }
    return stats;
  }

  stop(): void {
    if (!this.exited && this.child.pid !== undefined) this.child.kill("SIGKILL");
  }
}

function parsePingSummary(stdout: string): { transmitted: number; received: number } {
  const match = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
  assert.ok(match, `no summary in ping output:\n${stdout}`);
  return { transmitted: Number(match[1]), received: Number(match[2]) };
}

test("open rejects invalid options", async () => {
  const valid: TunOptions = { name: "cytun0", mtuBytes: 1400, addressCidr: "10.77.0.1/24" };
  const cases: Array<[string, Partial<TunOptions>]> = [
    ["empty name", { name: "" }],
    ["16-character name", { name: "a".repeat(16) }],
    ["name with slash", { name: "cy/0" }],
    ["name with space", { name: "cy 0" }],
    ["name with format", { name: "cy%d" }],
    ["name dot-dot", { name: ".." }],
    ["MTU below 68", { mtuBytes: 67 }],
    ["MTU above 65535", { mtuBytes: 65_536 }],
    ["fractional MTU", { mtuBytes: 1400.5 }],
    ["address without prefix", { addressCidr: "10.77.0.1" }],
    ["prefix length 0", { addressCidr: "10.77.0.1/0" }],
    ["prefix length 33", { addressCidr: "10.77.0.1/33" }],
    ["octet above 255", { addressCidr: "10.77.0.256/24" }],
    ["IPv6 address", { addressCidr: "fd00::1/64" }],
  ];
  for (const [name, override] of cases) {
    await assert.rejects(
      TunDevice.open({ ...valid, ...override, devicePath: "/nonexistent/cytun-test/tun" }),
      (err: unknown) => err instanceof TunError && err.code === "INVALID_OPTIONS",
      name,
    );
  }
});

test("open reports missing clone device", async () => {
  const devicePath = "/nonexistent/cytun-test/tun";
  await assert.rejects(TunDevice.open({ name: "cytun0", mtuBytes: 1400, addressCidr: "10.77.0.1/24", devicePath }), (err: unknown) => {
    assert.ok(err instanceof TunError);
    assert.equal(err.code, "TUN_UNAVAILABLE");
    assert.match(err.message, /\/nonexistent\/cytun-test\/tun/);
    assert.match(err.message, /modprobe tun/);
    return true;
  });
});

describe("TUN device in a network namespace", { skip: namespaceSkipReason() }, () => {
  let fixture: EchoFixture | undefined;

  before(async () => {
    const added = await run("ip", ["netns", "add", NAMESPACE]);
    assert.equal(added.exitCode, 0, `ip netns add ${NAMESPACE} failed: ${added.stderr}`);
    fixture = EchoFixture.start();
    const ready = await fixture.next("ready");
    assert.equal(ready.name, TUN_NAME);
  });

  after(async () => {
    fixture?.stop();
    const deleted = await run("ip", ["netns", "delete", NAMESPACE]);
    assert.equal(deleted.exitCode, 0, `ip netns delete ${NAMESPACE} failed: ${deleted.stderr}`);
  });

  test("open sets MTU, address and route", async () => {
    const link = await runInNamespace(["ip", "-j", "link", "show", "dev", TUN_NAME]);
    const [linkInfo] = JSON.parse(link.stdout) as Array<{ mtu: number; flags: string[] }>;
    assert.ok(linkInfo, link.stderr);
    assert.equal(linkInfo.mtu, TUN_MTU_BYTES);
    assert.ok(linkInfo.flags.includes("UP"), `flags: ${linkInfo.flags.join(",")}`);

    const address = await runInNamespace(["ip", "-j", "-4", "address", "show", "dev", TUN_NAME]);
    const [addressInfo] = JSON.parse(address.stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
    assert.deepEqual(
      addressInfo?.addr_info.map((entry) => `${entry.local}/${entry.prefixlen}`),
      [TUN_CIDR],
    );

    const route = await runInNamespace(["ip", "-j", "route", "get", PEER_ADDRESS]);
    const [routeInfo] = JSON.parse(route.stdout) as Array<{ dev: string; prefsrc: string }>;
    assert.equal(routeInfo?.dev, TUN_NAME);
    assert.equal(routeInfo?.prefsrc, "10.77.0.1");
  });

  test("packets before onPacket arrive whole", async () => {
    assert.ok(fixture);
    const count = 100;
    const sender = await runInNamespace(fixtureCommand("tun-udp-sender.ts", [PEER_ADDRESS, String(DISCARD_PORT), String(count), String(MAX_UDP_PAYLOAD_BYTES)]));
    assert.equal(fixtureLine(sender.stdout, "sent").sent, count, sender.stderr);

    await fixture.request("attach", "attached");
    const stats = await fixture.statsWhen((s) => s.udpPackets === count);
    assert.equal(stats.udpPackets, count);
    assert.equal(stats.malformedPackets, 0);
  });

  test("ping gets 5 echo replies", { timeout: 30_000 }, async () => {
    assert.ok(fixture);
    await fixture.request("reset", "reset");
    const ping = await runInNamespace(["ping", "-c", "5", "-i", "0.2", "-W", "2", PEER_ADDRESS]);
    const summary = parsePingSummary(ping.stdout);
    assert.equal(summary.transmitted, 5);
    assert.equal(summary.received, 5);
    const stats = await fixture.request("stats", "stats");
    assert.equal(stats.echoRequests, 5);
    assert.equal(stats.echoReplies, 5);
  });

  test("flood ping keeps one packet per read", { timeout: 60_000 }, async (t) => {
    assert.ok(fixture);
    await fixture.request("reset", "reset");
    const count = 2000;
    const payloadBytes = 1200;
    const ping = await runInNamespace(["ping", "-f", "-c", String(count), "-s", String(payloadBytes), "-W", "2", PEER_ADDRESS], 60_000);
    const summary = parsePingSummary(ping.stdout);
    const stats = await fixture.request("stats", "stats");
    t.diagnostic(`flood ping: ${summary.received}/${summary.transmitted} replies`);
    assert.equal(summary.transmitted, count);
    assert.equal(summary.received, count);
    assert.equal(stats.echoRequests, count);
    assert.equal(stats.malformedPackets, 0);
    // IPv4 header 20 + ICMP header 8 + payload.
    assert.equal(stats.maxChunkBytes, payloadBytes + 28);
  });

  test("throwing handler drops packet", { timeout: 30_000 }, async () => {
    assert.ok(fixture);
    await fixture.request("attach-throwing", "attached");
    const lost = await runInNamespace(["ping", "-c", "1", "-W", "1", PEER_ADDRESS]);
    assert.equal(parsePingSummary(lost.stdout).received, 0);
    const stats = await fixture.request("stats", "stats");
    const counters = stats.counters as Record<string, number>;
    assert.ok((counters["tun.rx.drop.handler_error"] ?? 0) >= 1, JSON.stringify(counters));

    await fixture.request("attach", "attached");
    const answered = await runInNamespace(["ping", "-c", "1", "-W", "2", PEER_ADDRESS]);
    assert.equal(parsePingSummary(answered.stdout).received, 1);
  });

  test("write counts invalid packet drop", async () => {
    assert.ok(fixture);
    const result = await fixture.request("write-invalid", "written");
    assert.equal(result.written, false);
    assert.equal((result.counters as Record<string, number>)["tun.tx.drop.invalid"], 1);
  });

  test("UDP flood keeps one packet per read", { timeout: 120_000 }, async (t) => {
    assert.ok(fixture);
    await fixture.request("reset", "reset");
    const count = 200_000;
    const sender = await runInNamespace(
      fixtureCommand("tun-udp-sender.ts", [PEER_ADDRESS, String(DISCARD_PORT), String(count), String(MAX_UDP_PAYLOAD_BYTES)]),
      120_000,
    );
    const sent = fixtureLine(sender.stdout, "sent");
    assert.equal(sent.sent, count, sender.stderr);
    // Stop polling once the count stops changing, because the kernel drops what the reader misses.
    let previous = -1;
    const stats = await fixture.statsWhen((s) => {
      const settled = s.udpPackets === previous;
      previous = s.udpPackets as number;
      return settled;
    });
    const udpPackets = stats.udpPackets as number;
    const readWindowMs = (stats.lastUdpAtMs as number) - (stats.firstUdpAtMs as number);
    const sendRate = Math.round(count / ((sent.elapsedMs as number) / 1000));
    const readRate = Math.round(udpPackets / (readWindowMs / 1000));
    t.diagnostic(`sender: ${count} datagrams at ${sendRate} packets/s`);
    t.diagnostic(`fixture: ${udpPackets} read at ${readRate} packets/s, ${count - udpPackets} dropped before the read`);
    assert.equal(stats.malformedPackets, 0);
    assert.ok(udpPackets > 0, "no UDP packet was read");
    assert.ok(udpPackets <= count, `read ${udpPackets} of ${count} sent`);
    assert.equal(stats.maxChunkBytes, MAX_UDP_PAYLOAD_BYTES + 28);
  });

  test("open reports name in use and ip failures", { timeout: 30_000 }, async () => {
    const result = await runInNamespace(fixtureCommand("tun-open-errors.ts", ["with-device", TUN_NAME]));
    const outcome = fixtureLine(result.stdout, "result") as Record<string, Record<string, unknown>>;

    assert.equal(outcome.nameInUse?.code, "NAME_IN_USE");
    assert.match(String(outcome.nameInUse?.message), /ip link delete cytun0/);
    assert.equal(outcome.loopbackName?.code, "NAME_IN_USE");

    assert.equal(outcome.configureFailed?.code, "CONFIGURE_FAILED");
    assert.equal(outcome.configureFailed?.causeName, "IpCommandError");
    assert.match(String(outcome.configureFailed?.message), /ip link set dev cytunfail0 mtu 1400/);
    assert.match(String(outcome.configureFailed?.message), /install iproute2/i);
    assert.equal(outcome.leftBehind, false);

    assert.equal(outcome.ipFailure?.thrown, true);
    assert.equal(outcome.ipFailure?.command, "ip link set dev cytun-nosuch up");
    assert.match(String(outcome.ipFailure?.stderr), /Cannot find device/);
    assert.notEqual(outcome.ipFailure?.exitCode, 0);
    assert.match(String(outcome.ipFailure?.message), /^ip link set dev cytun-nosuch up failed with exit status \d+: .*Cannot find device/);
  });

  test("open without CAP_NET_ADMIN is denied", { timeout: 30_000 }, async () => {
    const result = await runInNamespace([
      "setpriv",
      "--inh-caps=-net_admin",
      "--bounding-set=-net_admin",
      ...fixtureCommand("tun-open-errors.ts", ["no-cap"]),
    ]);
    const outcome = fixtureLine(result.stdout, "result") as Record<string, Record<string, unknown>>;
    assert.equal(outcome.noCap?.code, "PERMISSION_DENIED", result.stderr);
    assert.match(String(outcome.noCap?.message), /CAP_NET_ADMIN/);
  });

  test("close removes the interface", async () => {
    assert.ok(fixture);
    const closed = await fixture.request("close", "closed");
    assert.equal(closed.writeAfterClose, false);
    assert.equal((closed.counters as Record<string, number>)["tun.tx.drop.closed"], 1);
    const link = await runInNamespace(["ip", "link", "show", "dev", TUN_NAME]);
    assert.notEqual(link.exitCode, 0);
    assert.match(link.stderr, /does not exist|Cannot find device/);
  });
});
