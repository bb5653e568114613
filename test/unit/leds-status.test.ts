import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LedState } from "../../firmware/src/appliance/leds/patterns.js";
import { StatusLeds } from "../../firmware/src/appliance/leds/status-leds.js";
import { LedFileSystem, nodeLedFileSystem } from "../../firmware/src/appliance/leds/sysfs-io.js";

// Contents of a Raspberry Pi 4 on Raspberry Pi OS Bookworm, shortened.
const ACT_TRIGGERS = "none rc-feedback kbd-scrolllock kbd-numlock [mmc0] timer oneshot heartbeat backlight gpio cpu default-on input";
const PWR_TRIGGERS = "none rc-feedback kbd-scrolllock kbd-numlock mmc0 timer oneshot heartbeat backlight gpio cpu [default-on] input";

interface FakeLed {
  trigger?: string;
  brightness?: string;
  maxBrightness?: string;
  delayOnMs?: string;
  delayOffMs?: string;
}

/** Builds <root>/class/leds/<name>/ with the attribute files of an LED class device. */
function addLed(root: string, name: string, led: FakeLed = {}): string {
  const dir = path.join(root, "class", "leds", name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "trigger"), (led.trigger ?? ACT_TRIGGERS) + "\n");
  writeFileSync(path.join(dir, "brightness"), (led.brightness ?? "0") + "\n");
  writeFileSync(path.join(dir, "max_brightness"), (led.maxBrightness ?? "255") + "\n");
  // The kernel creates delay_on and delay_off with the timer trigger. A fake
  // tree keeps them, so a blink pattern can be written from any trigger.
  writeFileSync(path.join(dir, "delay_on"), (led.delayOnMs ?? "500") + "\n");
  writeFileSync(path.join(dir, "delay_off"), (led.delayOffMs ?? "500") + "\n");
  return dir;
}

function makeRoot(t: { after: (fn: () => void) => void }): string {
  const root = mkdtempSync(path.join(tmpdir(), "leds-sysfs-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

function makePiTree(t: { after: (fn: () => void) => void }): string {
  const root = makeRoot(t);
  addLed(root, "ACT", { trigger: ACT_TRIGGERS, brightness: "0" });
  addLed(root, "PWR", { trigger: PWR_TRIGGERS, brightness: "255" });
  return root;
}

/** Wraps node:fs and records each successful write as "<path below class/leds>=<value>". */
function recordingFileSystem(root: string): { fileSystem: LedFileSystem; writes: string[] } {
  const writes: string[] = [];
  const base = path.join(root, "class", "leds");
  const fileSystem: LedFileSystem = {
    exists: (file) => nodeLedFileSystem.exists(file),
    readFile: (file) => nodeLedFileSystem.readFile(file),
    writeFile: (file, value) => {
      nodeLedFileSystem.writeFile(file, value);
      writes.push(`${path.relative(base, file)}=${value}`);
    },
  };
  return { fileSystem, writes };
}

function openRecorded(root: string): { leds: StatusLeds; writes: string[] } {
  const { fileSystem, writes } = recordingFileSystem(root);
  return { leds: StatusLeds.open({ sysfsRoot: root, fileSystem }), writes };
}

function readAttribute(root: string, led: string, attribute: string): string {
  return readFileSync(path.join(root, "class", "leds", led, attribute), "utf8");
}

const EXPECTED_WRITES: Record<LedState, string[]> = {
  booting: ["ACT/trigger=timer", "ACT/delay_on=100", "ACT/delay_off=100", "PWR/trigger=none", "PWR/brightness=255"],
  provisioning: ["ACT/trigger=timer", "ACT/delay_on=500", "ACT/delay_off=500", "PWR/trigger=none", "PWR/brightness=255"],
  "waiting-for-cloud": ["ACT/trigger=timer", "ACT/delay_on=100", "ACT/delay_off=900", "PWR/trigger=none", "PWR/brightness=255"],
  online: ["ACT/trigger=none", "ACT/brightness=255", "PWR/trigger=none", "PWR/brightness=255"],
  serving: ["ACT/trigger=heartbeat", "PWR/trigger=none", "PWR/brightness=255"],
  error: ["ACT/trigger=none", "ACT/brightness=0", "PWR/trigger=timer", "PWR/delay_on=250", "PWR/delay_off=250"],
};

for (const [state, expected] of Object.entries(EXPECTED_WRITES) as [LedState, string[]][]) {
  test(`show ${state} writes its pattern`, (t) => {
    const root = makePiTree(t);
    const { leds, writes } = openRecorded(root);
    leds.show(state);
    assert.deepEqual(writes, expected);
    assert.equal(leds.state, state);
    assert.equal(leds.counters.get("leds.writes"), expected.length);
    assert.equal(leds.counters.get("leds.write_failed"), 0);
  });
}

test("show leaves values in the files", (t) => {
  const root = makePiTree(t);
  const leds = StatusLeds.open({ sysfsRoot: root });
  leds.show("waiting-for-cloud");
  assert.equal(readAttribute(root, "ACT", "trigger"), "timer");
  assert.equal(readAttribute(root, "ACT", "delay_on"), "100");
  assert.equal(readAttribute(root, "ACT", "delay_off"), "900");
  assert.equal(readAttribute(root, "PWR", "trigger"), "none");
  assert.equal(readAttribute(root, "PWR", "brightness"), "255");
});

test("same state twice writes nothing", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.show("provisioning");
  const afterFirst = writes.length;
  leds.show("provisioning");
  assert.equal(afterFirst, 5);
  assert.equal(writes.length, afterFirst);
});

test("state change rewrites only changed LEDs", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.show("booting");
  writes.length = 0;
  leds.show("online");
  assert.deepEqual(writes, ["ACT/trigger=none", "ACT/brightness=255"]);
  writes.length = 0;
  leds.show("error");
  assert.deepEqual(writes, ["ACT/trigger=none", "ACT/brightness=0", "PWR/trigger=timer", "PWR/delay_on=250", "PWR/delay_off=250"]);
});

test("fallback names led0 and led1", (t) => {
  const root = makeRoot(t);
  addLed(root, "led0", { trigger: ACT_TRIGGERS, maxBrightness: "1" });
  addLed(root, "led1", { trigger: PWR_TRIGGERS, maxBrightness: "1" });
  const { leds, writes } = openRecorded(root);
  assert.deepEqual(leds.ledNames, { act: "led0", pwr: "led1" });
  leds.show("online");
  assert.deepEqual(writes, ["led0/trigger=none", "led0/brightness=1", "led1/trigger=none", "led1/brightness=1"]);
});

test("ACT preferred over led0", (t) => {
  const root = makePiTree(t);
  addLed(root, "led0");
  addLed(root, "led1");
  const { leds, writes } = openRecorded(root);
  assert.deepEqual(leds.ledNames, { act: "ACT", pwr: "PWR" });
  leds.show("serving");
  assert.equal(writes.filter((w) => w.startsWith("led")).length, 0);
});

test("missing LEDs are no error", (t) => {
  const root = makeRoot(t);
  const { leds, writes } = openRecorded(root);
  assert.deepEqual(leds.ledNames, { act: null, pwr: null });
  for (const state of Object.keys(EXPECTED_WRITES) as LedState[]) leds.show(state);
  leds.restore();
  assert.deepEqual(writes, []);
  assert.equal(leds.counters.get("leds.write_failed"), 0);
  assert.equal(leds.counters.get("leds.read_failed"), 0);
});

test("missing sysfs root is no error", () => {
  const leds = StatusLeds.open({ sysfsRoot: path.join(tmpdir(), "leds-no-such-root", String(process.pid)) });
  leds.show("booting");
  assert.equal(leds.state, "booting");
  assert.equal(leds.counters.get("leds.write_failed"), 0);
});

test("error without PWR blinks ACT", (t) => {
  const root = makeRoot(t);
  addLed(root, "ACT", { trigger: ACT_TRIGGERS });
  const { leds, writes } = openRecorded(root);
  assert.deepEqual(leds.ledNames, { act: "ACT", pwr: null });
  leds.show("error");
  assert.deepEqual(writes, ["ACT/trigger=timer", "ACT/delay_on=900", "ACT/delay_off=100"]);
  writes.length = 0;
  leds.show("online");
  assert.deepEqual(writes, ["ACT/trigger=none", "ACT/brightness=255"]);
});

test("restore writes original triggers back", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.show("error");
  writes.length = 0;
  leds.restore();
  assert.deepEqual(writes, ["ACT/trigger=mmc0", "PWR/trigger=default-on"]);
  assert.equal(readAttribute(root, "ACT", "trigger"), "mmc0");
  assert.equal(readAttribute(root, "PWR", "trigger"), "default-on");
  assert.equal(leds.state, null);
});

test("restore twice writes once", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.show("online");
  leds.restore();
  const afterFirst = writes.length;
  leds.restore();
  assert.equal(writes.length, afterFirst);
});

test("restore before show writes nothing", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.restore();
  assert.deepEqual(writes, []);
});

test("restore of none trigger writes brightness", (t) => {
  const root = makeRoot(t);
  addLed(root, "ACT", { trigger: ACT_TRIGGERS });
  addLed(root, "PWR", { trigger: "[none] timer heartbeat", brightness: "1" });
  const { leds, writes } = openRecorded(root);
  leds.show("booting");
  writes.length = 0;
  leds.restore();
  assert.deepEqual(writes, ["ACT/trigger=mmc0", "PWR/trigger=none", "PWR/brightness=1"]);
});

test("restore of timer trigger writes delays", (t) => {
  const root = makeRoot(t);
  addLed(root, "ACT", { trigger: "none mmc0 [timer] heartbeat", delayOnMs: "30", delayOffMs: "70" });
  const { leds, writes } = openRecorded(root);
  leds.show("online");
  writes.length = 0;
  leds.restore();
  assert.deepEqual(writes, ["ACT/trigger=timer", "ACT/delay_on=30", "ACT/delay_off=70"]);
});

test("show after restore writes again", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.show("online");
  leds.restore();
  writes.length = 0;
  leds.show("online");
  assert.deepEqual(writes, EXPECTED_WRITES.online);
  assert.equal(leds.state, "online");
});

test("failed write is counted, not thrown", (t) => {
  const root = makePiTree(t);
  // Root ignores file modes, so a directory in place of the attribute makes the write fail (EISDIR).
  const brightness = path.join(root, "class", "leds", "ACT", "brightness");
  rmSync(brightness);
  mkdirSync(brightness);
  const { leds, writes } = openRecorded(root);
  assert.doesNotThrow(() => leds.show("online"));
  assert.equal(leds.counters.get("leds.write_failed"), 1);
  assert.deepEqual(writes, ["ACT/trigger=none", "PWR/trigger=none", "PWR/brightness=255"]);
  assert.equal(leds.state, "online");
});

test("failed LED is written again", (t) => {
  const root = makePiTree(t);
  const brightness = path.join(root, "class", "leds", "ACT", "brightness");
  rmSync(brightness);
  mkdirSync(brightness);
  const { leds, writes } = openRecorded(root);
  leds.show("online");
  rmSync(brightness, { recursive: true });
  writeFileSync(brightness, "0\n");
  writes.length = 0;
  leds.show("online");
  assert.deepEqual(writes, ["ACT/trigger=none", "ACT/brightness=255"]);
  assert.equal(leds.counters.get("leds.write_failed"), 1);
  writes.length = 0;
  leds.show("online");
  assert.deepEqual(writes, []);
});

test("missing attribute is not created", (t) => {
  const root = makePiTree(t);
  const delayOn = path.join(root, "class", "leds", "ACT", "delay_on");
  rmSync(delayOn);
  const leds = StatusLeds.open({ sysfsRoot: root });
  assert.doesNotThrow(() => leds.show("booting"));
  assert.equal(leds.counters.get("leds.write_failed"), 1);
  assert.throws(() => readFileSync(delayOn), { code: "ENOENT" });
});

test("heartbeat missing falls back to on", (t) => {
  const root = makeRoot(t);
  addLed(root, "ACT", { trigger: "none [mmc0] timer" });
  const { leds, writes } = openRecorded(root);
  leds.show("serving");
  assert.deepEqual(writes, ["ACT/trigger=none", "ACT/brightness=255"]);
  writes.length = 0;
  leds.show("online");
  assert.deepEqual(writes, [], "online shows the same steady on as the fallback");
});

test("unreadable trigger skips restore", (t) => {
  const root = makePiTree(t);
  const { fileSystem, writes } = recordingFileSystem(root);
  const actTrigger = path.join(root, "class", "leds", "ACT", "trigger");
  const denyingFileSystem: LedFileSystem = {
    ...fileSystem,
    readFile: (file) => {
      if (file === actTrigger) throw Object.assign(new Error(`EACCES: permission denied, open '${file}'`), { code: "EACCES" });
      return fileSystem.readFile(file);
    },
  };
  const leds = StatusLeds.open({ sysfsRoot: root, fileSystem: denyingFileSystem });
  assert.equal(leds.counters.get("leds.read_failed"), 1);
  leds.show("online");
  assert.deepEqual(writes, EXPECTED_WRITES.online);
  writes.length = 0;
  leds.restore();
  assert.deepEqual(writes, ["PWR/trigger=default-on"]);
});

test("missing max_brightness means 1", (t) => {
  const root = makeRoot(t);
  const dir = addLed(root, "ACT", { trigger: ACT_TRIGGERS });
  rmSync(path.join(dir, "max_brightness"));
  const { leds, writes } = openRecorded(root);
  leds.show("online");
  assert.deepEqual(writes, ["ACT/trigger=none", "ACT/brightness=1"]);
  assert.equal(leds.counters.get("leds.read_failed"), 1);
});

test("invalid state is ignored", (t) => {
  const root = makePiTree(t);
  const { leds, writes } = openRecorded(root);
  leds.show("online");
  writes.length = 0;
  assert.doesNotThrow(() => leds.show("sleeping" as LedState));
  assert.doesNotThrow(() => leds.show("toString" as LedState));
  assert.deepEqual(writes, []);
  assert.equal(leds.state, "online");
});
