// The status table: one pattern per appliance state on each of the two
// on-board LEDs of a Raspberry Pi. ACT is green and PWR is red on the boards
// with both LEDs. Each state has its own ACT pattern. PWR stays on except in
// the error state, where its blinking makes a fault visible from a distance.

export const LED_STATES = ["booting", "provisioning", "waiting-for-cloud", "online", "serving", "error"] as const;

/** Appliance state shown on the LEDs. "serving" means at least one general node behind the adapter is served. */
export type LedState = (typeof LED_STATES)[number];

/**
 * Pattern of one LED. "blink" uses the kernel timer trigger, "heartbeat" the
 * kernel heartbeat trigger (a double flash whose period follows the load average).
 */
export type LedPattern =
  | { kind: "off" }
  | { kind: "on" }
  | { kind: "blink"; delayOnMs: number; delayOffMs: number }
  | { kind: "heartbeat" };

export interface StatePatterns {
  act: LedPattern;
  pwr: LedPattern;
  /**
   * Pattern for ACT on boards without a PWR LED (Pi Zero), where `pwr` cannot
   * be seen. Such boards use `act` when this field is absent.
   */
  actWithoutPwr?: LedPattern;
}

const OFF: LedPattern = { kind: "off" };
const ON: LedPattern = { kind: "on" };

function blink(delayOnMs: number, delayOffMs: number): LedPattern {
  return { kind: "blink", delayOnMs, delayOffMs };
}

export const STATUS_LED_PATTERNS: Readonly<Record<LedState, Readonly<StatePatterns>>> = {
  booting: { act: blink(100, 100), pwr: ON },
  provisioning: { act: blink(500, 500), pwr: ON },
  "waiting-for-cloud": { act: blink(100, 900), pwr: ON },
  online: { act: ON, pwr: ON },
  serving: { act: { kind: "heartbeat" }, pwr: ON },
  // Long on, short off differs from every other ACT pattern, so an ACT-only board still shows the error.
  error: { act: OFF, pwr: blink(250, 250), actWithoutPwr: blink(900, 100) },
};

/**
 * Pattern shown in place of "heartbeat" when the kernel lacks the heartbeat
 * trigger. The timer trigger cannot flash twice, so "serving" then looks like "online".
 */
export const HEARTBEAT_FALLBACK: LedPattern = ON;

export function samePattern(a: LedPattern | null, b: LedPattern | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.kind === "blink" && b.kind === "blink") {
    return a.delayOnMs === b.delayOnMs && a.delayOffMs === b.delayOffMs;
  }
  return a.kind === b.kind;
}

export function describePattern(pattern: LedPattern): string {
  switch (pattern.kind) {
    case "off":
      return "off";
    case "on":
      return "on";
    case "blink":
      return `blink ${pattern.delayOnMs} ms on / ${pattern.delayOffMs} ms off`;
    case "heartbeat":
      return "heartbeat (double flash)";
  }
}
