// The adapter's dataplane worker under faults, with real traffic: gn (behind
// the adapter) pings cn1 (behind another NAPT) every 20 ms while the worker
// is killed with SIGKILL, then stopped with SIGSTOP, then killed in a loop.
// Traffic must resume each time without a new handshake, and the restarts
// must back off.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Lab, LabProcess } from "./harness.js";
import { Overlay, OverlayNode } from "./overlay-fixture.js";

const PING_INTERVAL_S = "0.02";

interface DataplaneJson {
  pid: number | null;
  restarts: number;
  crashStreak: number;
  nextRestartDelayMs: number;
  lastRecovery: { reason: string; gapMs: number; atMs: number } | null;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Reply times in ms since the epoch, from `ping -D` lines such as "[1733338000.123456] 64 bytes from ...". */
function replyTimes(output: string): number[] {
  const times: number[] = [];
  for (const m of output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from /gm)) times.push(Number(m[1]) * 1000);
  return times;
}

/** The longest silence between two replies around an event: the last reply before it and the first after. */
function outageAround(times: number[], eventMs: number): number {
  const before = times.filter((t) => t <= eventMs).at(-1);
  const after = times.find((t) => t > eventMs);
  assert.ok(before !== undefined, "a reply before the event");
  assert.ok(after !== undefined, "a reply after the event");
  return after - before;
}

function handshakes(counters: Record<string, number>): number {
  return (counters["handshake.initiations_sent"] ?? 0) + (counters["handshake.responses_sent"] ?? 0) + (counters["handshake.probes_sent"] ?? 0);
}

describe("dataplane watchdog", { timeout: 300_000 }, () => {
  let lab: Lab;
  let overlay: Overlay;
  let cn1: OverlayNode;
  let ping: LabProcess | undefined;

  const dataplane = async (): Promise<DataplaneJson> => ((await overlay.status("ad1")) as unknown as { dataplane: DataplaneJson }).dataplane;
  const newWorker = (old: number, timeoutMs: number) =>
    waitFor(`a worker other than ${old}`, async () => {
      const d = await dataplane();
      return d.pid && d.pid !== old ? d : null;
    }, timeoutMs);

  before(async () => {
    lab = await Lab.up();
    overlay = new Overlay(lab);
    await overlay.startCloud();
    cn1 = await overlay.addNode("cn1", "cn1");
    await overlay.admin("node", "add", "ad1", "--kind", "adapter");
    await overlay.addGeneralNode("ad1", "gn1", lab.mac.gn);
    const adapter = await overlay.startNode("adapter", "ad1", lab.iface.adapterLan);
    await adapter.process.waitForLine(/"general nodes updated from the cloud"/, 20_000);
    // The lab's event script configures the address and route; -q exits once
    // bound, and the lease (an hour) outlasts the suite.
    const records = fs.mkdtempSync(path.join(overlay.dir, "gn-"));
    const text = fs.readFileSync(path.resolve("test/lab/fixtures/udhcpc-script.sh"), "utf8").replace(/^dir=.*$/m, `dir=${records}`);
    const script = path.join(records, "udhcpc-script.sh");
    fs.writeFileSync(script, text, { mode: 0o755 });
    await lab.exec("gn", ["udhcpc", "-q", "-i", "eth0", "-t", "10", "-T", "1", "-s", script], { timeoutMs: 30_000 });
  });

  after(async () => {
    await ping?.kill("SIGINT");
    overlay?.cleanup();
    await lab?.down();
  });

  test("traffic resumes after SIGKILL and SIGSTOP of the worker, with no new handshake", async (t) => {
    // -D prints a timestamp per reply, -i 0.02 sends 50 per second.
    ping = lab.spawn("gn", ["ping", "-D", "-n", "-i", PING_INTERVAL_S, cn1.virtualIP]);
    await ping.waitForLine(/bytes from/, 20_000);
    // Hole punching probes from both ends and retransmits for up to 4 s, so
    // the count is taken once neither end has started a handshake for 5 s.
    const counts = async () => [handshakes((await overlay.status("ad1")).counters), handshakes((await overlay.status("cn1")).counters)] as const;
    let settled = await counts();
    let stableSince = Date.now();
    const deadline = stableSince + 30_000;
    while (Date.now() - stableSince < 5_000) {
      await sleep(500);
      const now = await counts();
      if (now[0] !== settled[0] || now[1] !== settled[1]) {
        settled = now;
        stableSince = Date.now();
      }
      assert.ok(Date.now() < deadline, "handshakes kept starting for 30 s");
    }
    const [adapterBefore, cn1Before] = settled;
    const first = await dataplane();
    assert.ok(first.pid, "the worker runs");

    const killedAt = Date.now();
    process.kill(first.pid, "SIGKILL");
    const second = await newWorker(first.pid, 10_000);
    assert.match(second.lastRecovery!.reason, /SIGKILL/);
    await sleep(2_000);

    const stoppedAt = Date.now();
    process.kill(second.pid!, "SIGSTOP");
    const third = await newWorker(second.pid!, 15_000);
    assert.equal(third.lastRecovery!.reason, "missed heartbeats");
    await sleep(2_000);

    const times = replyTimes(ping.output());
    const killGap = outageAround(times, killedAt);
    const stopGap = outageAround(times, stoppedAt);
    t.diagnostic(`reply gap around SIGKILL: ${killGap.toFixed(0)} ms (worker replaced in ${second.lastRecovery!.gapMs} ms)`);
    t.diagnostic(`reply gap around SIGSTOP: ${stopGap.toFixed(0)} ms (worker replaced in ${third.lastRecovery!.gapMs} ms)`);
    assert.ok(killGap < 3_000, `outage after SIGKILL ${killGap} ms`);
    assert.ok(stopGap < 5_000, `outage after SIGSTOP ${stopGap} ms`);
    assert.ok(times.at(-1)! > Date.now() - 1_000, "replies still arrive");

    assert.equal(handshakes((await overlay.status("ad1")).counters), adapterBefore, "the adapter started no handshake");
    assert.equal(handshakes((await overlay.status("cn1")).counters), cn1Before, "cn1 answered no handshake");
  });

  test("a crash loop backs off, and traffic still resumes", async () => {
    const delays: number[] = [];
    let current = await dataplane();
    for (let i = 0; i < 3; i++) {
      const restartsBefore = current.restarts;
      process.kill(current.pid!, "SIGKILL");
      const noticed = await waitFor("the exit to be noticed", async () => {
        const d = await dataplane();
        return d.restarts > restartsBefore ? d : null;
      }, 10_000);
      delays.push(noticed.nextRestartDelayMs);
      current = await newWorker(current.pid!, 40_000);
    }
    // Each restart within 10 s of the last waits twice as long as the one before.
    for (let i = 1; i < delays.length; i++) assert.equal(delays[i], delays[i - 1]! * 2, `delays ${delays.join(", ")} ms`);
    assert.ok(delays[0]! >= 500, `delays ${delays.join(", ")} ms`);
    const replies = replyTimes(ping!.output()).length;
    await waitFor("replies after the loop", async () => replyTimes(ping!.output()).length > replies + 10, 10_000);
  });
});
