import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { formatPatternTable } from "../../firmware/src/appliance/leds/pattern-table.js";
import {
  describePattern,
  LED_STATES,
  LedPattern,
  samePattern,
  STATUS_LED_PATTERNS,
} from "../../firmware/src/appliance/leds/patterns.js";
import { parseTriggerList } from "../../firmware/src/appliance/leds/trigger.js";

test("trigger list with bracketed entry", () => {
  const list = parseTriggerList("none rc-feedback [mmc0] timer oneshot heartbeat default-on\n");
  assert.equal(list.active, "mmc0");
  assert.deepEqual(list.available, ["none", "rc-feedback", "mmc0", "timer", "oneshot", "heartbeat", "default-on"]);
});

test("trigger list without bracket is none", () => {
  const list = parseTriggerList("none timer heartbeat");
  assert.equal(list.active, "none");
  assert.deepEqual(list.available, ["none", "timer", "heartbeat"]);
});

test("trigger list with active none", () => {
  assert.equal(parseTriggerList("[none] timer").active, "none");
  assert.equal(parseTriggerList("").active, "none");
  assert.deepEqual(parseTriggerList("").available, []);
});

test("ACT pattern differs between states", () => {
  for (const [i, a] of LED_STATES.entries()) {
    for (const b of LED_STATES.slice(i + 1)) {
      const patternA = STATUS_LED_PATTERNS[a].act;
      const patternB = STATUS_LED_PATTERNS[b].act;
      assert.equal(samePattern(patternA, patternB), false, `${a} and ${b} both show ${describePattern(patternA)}`);
    }
  }
});

test("ACT-only patterns differ between states", () => {
  const actAlone = (state: (typeof LED_STATES)[number]): LedPattern =>
    STATUS_LED_PATTERNS[state].actWithoutPwr ?? STATUS_LED_PATTERNS[state].act;
  for (const [i, a] of LED_STATES.entries()) {
    for (const b of LED_STATES.slice(i + 1)) {
      assert.equal(samePattern(actAlone(a), actAlone(b)), false, `${a} and ${b} both show ${describePattern(actAlone(a))}`);
    }
  }
});

test("PWR blinks only on error", () => {
  for (const state of LED_STATES) {
    const expected: LedPattern = state === "error" ? { kind: "blink", delayOnMs: 250, delayOffMs: 250 } : { kind: "on" };
    assert.deepEqual(STATUS_LED_PATTERNS[state].pwr, expected, state);
  }
});

test("blink delays are whole milliseconds", () => {
  for (const state of LED_STATES) {
    const patterns = STATUS_LED_PATTERNS[state];
    for (const pattern of [patterns.act, patterns.pwr, patterns.actWithoutPwr]) {
      if (pattern?.kind !== "blink") continue;
      assert.ok(Number.isInteger(pattern.delayOnMs), `${state} delayOnMs ${pattern.delayOnMs}`);
      assert.ok(pattern.delayOnMs > 0, `${state} delayOnMs ${pattern.delayOnMs}`);
      assert.ok(Number.isInteger(pattern.delayOffMs), `${state} delayOffMs ${pattern.delayOffMs}`);
      assert.ok(pattern.delayOffMs > 0, `${state} delayOffMs ${pattern.delayOffMs}`);
    }
  }
});

test("samePattern compares blink delays", () => {
  assert.equal(samePattern({ kind: "blink", delayOnMs: 100, delayOffMs: 900 }, { kind: "blink", delayOnMs: 100, delayOffMs: 900 }), true);
  assert.equal(samePattern({ kind: "blink", delayOnMs: 100, delayOffMs: 900 }, { kind: "blink", delayOnMs: 100, delayOffMs: 100 }), false);
  assert.equal(samePattern({ kind: "on" }, { kind: "off" }), false);
  assert.equal(samePattern(null, { kind: "on" }), false);
  assert.equal(samePattern(null, null), true);
});

test("pattern table lists every state", () => {
  const table = formatPatternTable();
  const rows = table.trimEnd().split("\n");
  assert.equal(rows.length, LED_STATES.length + 2);
  assert.equal(rows[2], "| `booting` | the appliance is starting | blink 100 ms on / 100 ms off | on | blink 100 ms on / 100 ms off |");
  assert.equal(
    rows[7],
    "| `error` | a fault that needs attention; the log says which | off | blink 250 ms on / 250 ms off | blink 900 ms on / 100 ms off |",
  );
});

test("docs/leds.md contains current table", () => {
  const page = readFileSync(path.join(__dirname, "..", "..", "docs", "leds.md"), "utf8");
  assert.ok(page.includes(formatPatternTable()), "docs/leds.md differs from formatPatternTable(); paste its output into the page");
});
