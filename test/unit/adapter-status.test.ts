// The adapter's status LEDs: the state derived from the start phase and what
// the daemon observes, the indicator writing a fake sysfs tree, and what
// follows a fatal start error.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LedState, StatusLeds } from "../../firmware/src/appliance/leds/index.js";
import { AdapterStatusIndicator, AdapterStatusSource } from "../../firmware/src/appliance/status/indicator.js";
import { AdapterObservation, AdapterPhase, adapterLedState } from "../../firmware/src/appliance/status/led-state.js";
import { NotProvisionedError, classifyStartFailure } from "../../firmware/src/appliance/status/start-failure.js";
import { SystemdNotifier } from "../../firmware/src/appliance/systemd-notify.js";
import { ERROR_HOLD_MS, reportStartFailure } from "../../firmware/src/cli/adapter-start.js";
import { ExitStatus } from "../../firmware/src/cli/common.js";
import { ProvisioningError } from "../../firmware/src/node/provision.js";
import { TokenFileError } from "../../firmware/src/node/token-file.js";
import { logger } from "../../firmware/src/util/log.js";

// A Raspberry Pi 4 on Raspberry Pi OS Bookworm, shortened.
const ACT_TRIGGERS = "none timer oneshot heartbeat [mmc0] default-on";
const PWR_TRIGGERS = "none timer oneshot heartbeat mmc0 [default-on]";

/** Builds a fake LED class directory with ACT and PWR and returns its path. */
function fakeLedClassDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), "adapter-leds-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, trigger, brightness] of [
    ["ACT", ACT_TRIGGERS, "0"],
    ["PWR", PWR_TRIGGERS, "255"],
  ] as const) {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, "trigger"), trigger + "\n");
    writeFileSync(path.join(dir, name, "brightness"), brightness + "\n");
    writeFileSync(path.join(dir, name, "max_brightness"), "255\n");
    // The kernel creates these only with the timer trigger. The fake keeps them.
    writeFileSync(path.join(dir, name, "delay_on"), "500\n");
    writeFileSync(path.join(dir, name, "delay_off"), "500\n");
  }
  return dir;
}

/** Reads the attributes that tell the patterns apart, as "LED trigger brightness delay_on/delay_off". */
function readPattern(dir: string, led: "ACT" | "PWR"): string {
  const read = (attribute: string) => readFileSync(path.join(dir, led, attribute), "utf8").trim();
  const trigger = read("trigger");
  if (trigger === "timer") return `timer ${read("delay_on")}/${read("delay_off")}`;
  if (trigger === "none") return `none ${read("brightness")}`;
  return trigger;
}

/** What each state leaves in the fake tree on a board with both LEDs (docs/leds.md). */
const EXPECTED_FILES: Record<LedState, { act: string; pwr: string }> = {
  booting: { act: "timer 100/100", pwr: "none 255" },
  provisioning: { act: "timer 500/500", pwr: "none 255" },
  "waiting-for-cloud": { act: "timer 100/900", pwr: "none 255" },
  online: { act: "none 255", pwr: "none 255" },
  serving: { act: "heartbeat", pwr: "none 255" },
  error: { act: "none 0", pwr: "timer 250/250" },
};

function assertShows(dir: string, state: LedState, context: string): void {
  assert.equal(readPattern(dir, "ACT"), EXPECTED_FILES[state].act, `ACT ${context}`);
  assert.equal(readPattern(dir, "PWR"), EXPECTED_FILES[state].pwr, `PWR ${context}`);
}

class FakeAdapter implements AdapterStatusSource {
  hasIdentity = false;
  registeredWithNms = false;
  leasedGeneralNodes = 0;
}

function observation(hasIdentity: boolean, registered: boolean, leasedGeneralNodes: number): AdapterObservation {
  return { hasIdentity, registered, leasedGeneralNodes };
}

test("LED state for each phase and observation", () => {
  const cases: Array<[AdapterPhase, AdapterObservation, LedState]> = [
    ["booting", observation(false, false, 0), "booting"],
    ["booting", observation(true, true, 2), "booting"],
    ["provisioning", observation(false, false, 0), "provisioning"],
    ["provisioning", observation(true, false, 0), "waiting-for-cloud"],
    ["provisioning", observation(true, true, 0), "online"],
    ["running", observation(false, false, 0), "booting"],
    ["running", observation(true, false, 0), "waiting-for-cloud"],
    ["running", observation(true, false, 3), "waiting-for-cloud"],
    ["running", observation(true, true, 0), "online"],
    ["running", observation(true, true, 1), "serving"],
    ["failed", observation(true, true, 1), "error"],
    ["failed", observation(false, false, 0), "error"],
  ];
  for (const [phase, seen, expected] of cases) {
    assert.equal(adapterLedState(phase, seen), expected, `${phase} ${JSON.stringify(seen)}`);
  }
});

test("indicator walks the states on sysfs", (t) => {
  const dir = fakeLedClassDir(t);
  const leds = StatusLeds.open({ ledClassDir: dir });
  assert.deepEqual(leds.ledNames, { act: "ACT", pwr: "PWR" });
  // A long poll interval, so only the explicit refresh() calls write.
  const indicator = new AdapterStatusIndicator(leds, 3_600_000);
  t.after(() => indicator.stop());
  const adapter = new FakeAdapter();

  indicator.refresh();
  assertShows(dir, "booting", "at start");
  indicator.watch(adapter);
  indicator.setPhase("provisioning");
  assertShows(dir, "provisioning", "while redeeming the token");

  adapter.hasIdentity = true;
  indicator.refresh();
  assertShows(dir, "waiting-for-cloud", "with the identity, before registration");
  adapter.registeredWithNms = true;
  indicator.setPhase("running");
  assertShows(dir, "online", "once registered");
  adapter.leasedGeneralNodes = 1;
  indicator.refresh();
  assertShows(dir, "serving", "with a lease");
  adapter.leasedGeneralNodes = 0;
  indicator.refresh();
  assertShows(dir, "online", "after the last lease ended");
  adapter.registeredWithNms = false;
  indicator.refresh();
  assertShows(dir, "waiting-for-cloud", "after the NMS session was lost");
  indicator.setPhase("failed");
  assertShows(dir, "error", "after a fatal error");
  assert.equal(indicator.state, "error");

  leds.restore();
  assert.equal(readPattern(dir, "ACT"), "mmc0", "ACT gets its trigger back");
  assert.equal(readPattern(dir, "PWR"), "default-on", "PWR gets its trigger back");
  assert.equal(leds.counters.get("leds.write_failed"), 0);
});

test("indicator polls the source", async (t) => {
  const dir = fakeLedClassDir(t);
  const leds = StatusLeds.open({ ledClassDir: dir });
  const indicator = new AdapterStatusIndicator(leds, 10);
  t.after(() => indicator.stop());
  const adapter = new FakeAdapter();
  adapter.hasIdentity = true;
  indicator.watch(adapter);
  indicator.setPhase("running");
  assertShows(dir, "waiting-for-cloud", "before registration");

  adapter.registeredWithNms = true;
  const deadline = Date.now() + 2_000;
  while (indicator.state !== "online" && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assertShows(dir, "online", "after a poll, without refresh()");

  indicator.stop();
  adapter.leasedGeneralNodes = 1;
  await new Promise((resolve) => setTimeout(resolve, 50));
  assertShows(dir, "online", "no poll after stop()");
});

test("missing LED class dir runs without LEDs", () => {
  const leds = StatusLeds.open({ ledClassDir: path.join(tmpdir(), "adapter-leds-absent", String(process.pid)) });
  assert.equal(leds.present, false);
  const indicator = new AdapterStatusIndicator(leds, 3_600_000);
  indicator.setPhase("failed");
  assert.equal(indicator.state, "error");
  assert.equal(leds.counters.get("leds.write_failed"), 0);
  assert.equal(leds.counters.get("leds.writes"), 0);
});

test("token rejections and token files are permanent", () => {
  for (const code of ["token_invalid", "token_expired", "token_reused"]) {
    const failure = classifyStartFailure(new ProvisioningError(code, `the AS rejected the token (${code}): no; ask the operator for a new token`));
    assert.deepEqual(failure, { permanent: true, code, message: `the AS rejected the token (${code}): no; ask the operator for a new token` });
  }
  const tokenFile = classifyStartFailure(new TokenFileError("/var/lib/cyphonic/token.txt", "token", "invalid token"));
  assert.equal(tokenFile.permanent, true);
  assert.equal(tokenFile.code, "token_file_invalid");
  assert.equal(tokenFile.message, "/var/lib/cyphonic/token.txt: invalid token");
  assert.equal(classifyStartFailure(new NotProvisionedError("no identity")).code, "not_provisioned");
  assert.equal(classifyStartFailure(new NotProvisionedError("no identity")).permanent, true);
});

test("other start errors are retried", () => {
  assert.deepEqual(classifyStartFailure(new Error("interface eth1 not found")), { permanent: false, code: "start_failed", message: "interface eth1 not found" });
  assert.deepEqual(classifyStartFailure("text"), { permanent: false, code: "start_failed", message: "text" });
});

/** Creates a stop signal that the test sends. */
function stopSignal(): { promise: Promise<NodeJS.Signals>; send: (signal: NodeJS.Signals) => void } {
  let send: (signal: NodeJS.Signals) => void = () => undefined;
  const promise = new Promise<NodeJS.Signals>((resolve) => (send = resolve));
  return { promise, send };
}

function failureContext(dir: string, stop: Promise<NodeJS.Signals>, holdMs?: number) {
  const leds = StatusLeds.open({ ledClassDir: dir });
  const indicator = new AdapterStatusIndicator(leds, 3_600_000);
  indicator.refresh();
  return {
    stateDir: dir,
    leds,
    indicator,
    notifier: SystemdNotifier.fromEnvironment({}),
    stopSignal: stop,
    log: logger("test"),
    ...(holdMs === undefined ? {} : { holdMs }),
  };
}

test("rejected token holds error until stopped", async (t) => {
  const dir = fakeLedClassDir(t);
  const stop = stopSignal();
  const context = failureContext(dir, stop.promise, 10);
  const err = new ProvisioningError("token_reused", "the AS rejected the token (token_reused)");
  let settled = false;
  const reported = reportStartFailure({ daemon: null, err }, context).then(() => (settled = true));

  // Longer than the hold of a retried error, which must not apply here.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(settled, false, "the adapter must wait for a stop signal");
  assertShows(dir, "error", "while waiting");

  stop.send("SIGTERM");
  await reported;
  assert.equal(readPattern(dir, "ACT"), "mmc0", "ACT restored after the stop");
  assert.equal(readPattern(dir, "PWR"), "default-on", "PWR restored after the stop");
});

test("other start error exits after hold", async (t) => {
  const dir = fakeLedClassDir(t);
  const context = failureContext(dir, stopSignal().promise, 30);
  const started = Date.now();
  await assert.rejects(reportStartFailure({ daemon: null, err: new Error("interface eth1 not found") }, context), (err: unknown) => {
    assert.ok(err instanceof ExitStatus);
    assert.equal(err.status, 1);
    return true;
  });
  assert.ok(Date.now() - started >= 25, "the error was held before the exit");
  assertShows(dir, "error", "the exit listener restores the LEDs, not the hold");
});

test("stop during the hold ends it", async (t) => {
  const dir = fakeLedClassDir(t);
  const stop = stopSignal();
  // The default hold, so only the signal can end the wait within the test.
  const context = failureContext(dir, stop.promise);
  const started = Date.now();
  const reported = reportStartFailure({ daemon: null, err: new Error("nft failed") }, context);
  stop.send("SIGINT");
  await reported;
  assert.ok(Date.now() - started < ERROR_HOLD_MS / 10, "the signal ended the hold");
  assert.equal(readPattern(dir, "ACT"), "mmc0", "LEDs restored after the stop");
});

test("start error without LEDs is rethrown", async () => {
  const stop = stopSignal();
  const context = failureContext(path.join(tmpdir(), "adapter-leds-absent", String(process.pid)), stop.promise, 10_000);
  const err = new ProvisioningError("token_expired", "the AS rejected the token (token_expired)");
  await assert.rejects(reportStartFailure({ daemon: null, err }, context), (thrown: unknown) => thrown === err);
});
