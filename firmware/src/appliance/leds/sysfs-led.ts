// One LED of the Linux LED class, driven through its sysfs attributes under
// <sysfsRoot>/class/leds/<name>/. Remembers the settings it found on open so
// restore() can hand the LED back to the kernel trigger it had before.
import path from "node:path";
import { HEARTBEAT_FALLBACK, LedPattern, samePattern } from "./patterns.js";
import { SysfsIo } from "./sysfs-io.js";
import { parseTriggerList, TriggerList } from "./trigger.js";

export type LedRole = "ACT" | "PWR";

// Device tree labels of the on-board LEDs. Raspberry Pi OS Bookworm (kernel
// 6.1) and later label them ACT and PWR, and earlier releases led0 and led1.
const CANDIDATE_NAMES: Record<LedRole, readonly string[]> = {
  ACT: ["ACT", "led0"],
  PWR: ["PWR", "led1"],
};

/** Attribute values read on open, written back by restore(). */
interface SavedSettings {
  trigger: string;
  /** Read only when the trigger is "none", because a trigger sets the brightness itself. */
  brightness?: string;
  /** Read only when the trigger is "timer", the only trigger with these attributes. */
  delayOnMs?: string;
  delayOffMs?: string;
}

export class SysfsLed {
  private applied: LedPattern | null = null;
  /** Whether this process wrote to the LED since open or the last restore(). */
  private modified = false;
  private heartbeatWarned = false;

  private constructor(
    private readonly io: SysfsIo,
    readonly role: LedRole,
    /** Directory name under class/leds, such as "ACT" or "led0". */
    readonly name: string,
    private readonly dir: string,
    private readonly maxBrightness: number,
    private readonly triggers: TriggerList | undefined,
    private readonly saved: SavedSettings | undefined,
  ) {}

  /** Opens the first existing LED of the role's candidate names under ledClassDir (/sys/class/leds), or returns null when none exists. */
  static find(io: SysfsIo, ledClassDir: string, role: LedRole): SysfsLed | null {
    for (const name of CANDIDATE_NAMES[role]) {
      const dir = path.join(ledClassDir, name);
      if (io.exists(dir)) return SysfsLed.open(io, role, name, dir);
    }
    return null;
  }

  static candidateNames(role: LedRole): readonly string[] {
    return CANDIDATE_NAMES[role];
  }

  private static open(io: SysfsIo, role: LedRole, name: string, dir: string): SysfsLed {
    const read = (attribute: string) => io.read(path.join(dir, attribute));
    const triggerContent = read("trigger");
    const triggers = triggerContent === undefined ? undefined : parseTriggerList(triggerContent);
    let saved: SavedSettings | undefined;
    if (triggers) {
      saved = { trigger: triggers.active };
      if (triggers.active === "none") saved.brightness = read("brightness");
      if (triggers.active === "timer") {
        saved.delayOnMs = read("delay_on");
        saved.delayOffMs = read("delay_off");
      }
    }
    return new SysfsLed(io, role, name, dir, parseMaxBrightness(read("max_brightness")), triggers, saved);
  }

  /** Trigger that was active on open, or undefined when the trigger attribute could not be read. */
  get originalTrigger(): string | undefined {
    return this.saved?.trigger;
  }

  /**
   * Shows the pattern unless it is already shown. After a failed write the
   * LED's state is unknown, so the next call writes the pattern again.
   */
  apply(pattern: LedPattern): void {
    const resolved = this.substituteMissingTrigger(pattern);
    if (samePattern(this.applied, resolved)) return;
    this.modified = true;
    this.applied = this.writePattern(resolved) ? resolved : null;
  }

  /** Writes back the settings found on open. Does nothing when this process has not written to the LED. */
  restore(): void {
    if (!this.modified) return;
    this.modified = false;
    this.applied = null;
    const saved = this.saved;
    if (!saved) {
      this.io.log.warn({ led: this.name }, "LED not restored because its original trigger could not be read at open");
      return;
    }
    if (!this.write("trigger", saved.trigger)) return;
    if (saved.brightness !== undefined) this.write("brightness", saved.brightness);
    if (saved.delayOnMs !== undefined) this.write("delay_on", saved.delayOnMs);
    if (saved.delayOffMs !== undefined) this.write("delay_off", saved.delayOffMs);
  }

  private substituteMissingTrigger(pattern: LedPattern): LedPattern {
    // An unreadable trigger list gives no evidence, so the write is tried and a failure counted.
    if (pattern.kind !== "heartbeat" || !this.triggers || this.triggers.available.includes("heartbeat")) {
      return pattern;
    }
    if (!this.heartbeatWarned) {
      this.heartbeatWarned = true;
      this.io.log.warn({ led: this.name }, "kernel has no heartbeat LED trigger; showing the LED steady on instead");
    }
    return HEARTBEAT_FALLBACK;
  }

  /** Writes the pattern's attributes in order and stops at the first failed write. Returns whether all succeeded. */
  private writePattern(pattern: LedPattern): boolean {
    switch (pattern.kind) {
      // Selecting "none" turns the LED off in the kernel, so the brightness is written after it.
      case "off":
        return this.write("trigger", "none") && this.write("brightness", "0");
      case "on":
        return this.write("trigger", "none") && this.write("brightness", String(this.maxBrightness));
      // delay_on and delay_off exist only while the timer trigger is active, so the trigger goes first.
      case "blink":
        return (
          this.write("trigger", "timer") &&
          this.write("delay_on", String(pattern.delayOnMs)) &&
          this.write("delay_off", String(pattern.delayOffMs))
        );
      case "heartbeat":
        return this.write("trigger", "heartbeat");
    }
  }

  private write(attribute: string, value: string): boolean {
    return this.io.write(path.join(this.dir, attribute), value);
  }
}

/** Returns max_brightness, or 1 when it is missing or invalid, because every LED accepts 1 as on. */
function parseMaxBrightness(content: string | undefined): number {
  const value = Number(content);
  return content !== undefined && Number.isInteger(value) && value > 0 ? value : 1;
}
