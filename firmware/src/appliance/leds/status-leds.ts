// Shows the appliance state on the ACT and PWR LEDs of a Raspberry Pi.
//
// Usage: open once at start, call show() on every state change, and call
// restore() on the way out. The module installs no signal handlers, so the
// caller calls restore() from its SIGTERM and SIGINT handlers and from a
// process.on("exit") listener. All I/O is synchronous, which is what makes
// restore() work inside an "exit" listener.
import path from "node:path";
import { Counters } from "../../util/counters.js";
import { logger } from "../../util/log.js";
import { LED_STATES, LedState, STATUS_LED_PATTERNS } from "./patterns.js";
import { LedFileSystem, nodeLedFileSystem, SysfsIo } from "./sysfs-io.js";
import { LedRole, SysfsLed } from "./sysfs-led.js";

export interface StatusLedsOptions {
  /** Mount point of sysfs. Default "/sys". Tests pass a fake tree in a temporary directory. */
  sysfsRoot?: string;
  /** Directory of the LED class devices. Default "<sysfsRoot>/class/leds". Takes precedence over sysfsRoot. */
  ledClassDir?: string;
  /** File access for the attributes. Default: node:fs. */
  fileSystem?: LedFileSystem;
  /** Receives leds.writes, leds.write_failed and leds.read_failed. Default: a new Counters. */
  counters?: Counters;
}

export class StatusLeds {
  private current: LedState | null = null;

  private constructor(
    private readonly io: SysfsIo,
    private readonly act: SysfsLed | null,
    private readonly pwr: SysfsLed | null,
  ) {}

  /**
   * Finds the ACT and PWR LEDs and reads their current settings for restore().
   * Never throws. A missing LED is logged once and then ignored, so the
   * appliance runs on hardware without LEDs.
   */
  static open(options: StatusLedsOptions = {}): StatusLeds {
    const ledClassDir = options.ledClassDir ?? path.join(options.sysfsRoot ?? "/sys", "class", "leds");
    const io = new SysfsIo(options.fileSystem ?? nodeLedFileSystem, options.counters ?? new Counters(), logger("leds"));
    // One line for a system without the LED class (a container, a kernel
    // without CONFIG_NEW_LEDS), instead of one per LED.
    if (!io.exists(ledClassDir)) {
      io.log.warn({ ledClassDir }, "LED class directory not found; running without status LEDs");
      return new StatusLeds(io, null, null);
    }
    const find = (role: LedRole) => {
      const led = SysfsLed.find(io, ledClassDir, role);
      if (led) {
        io.log.info({ led: led.name, trigger: led.originalTrigger }, "status LED found");
      } else {
        const candidates = SysfsLed.candidateNames(role);
        io.log.warn({ role, ledClassDir, candidates }, "status LED not found; its patterns are not shown");
      }
      return led;
    };
    return new StatusLeds(io, find("ACT"), find("PWR"));
  }

  /** State last passed to show(), or null before the first show() and after restore(). */
  get state(): LedState | null {
    return this.current;
  }

  get counters(): Counters {
    return this.io.counters;
  }

  /** Whether at least one of ACT and PWR was found, so a state can be seen at all. */
  get present(): boolean {
    return this.act !== null || this.pwr !== null;
  }

  /** Directory names of the LEDs in use, such as "ACT" or "led0", or null for a missing LED. */
  get ledNames(): { act: string | null; pwr: string | null } {
    return { act: this.act?.name ?? null, pwr: this.pwr?.name ?? null };
  }

  /**
   * Shows the state's patterns. An LED whose pattern is already shown is not
   * written, so showing the same state twice writes nothing. The exception is
   * an LED whose last write failed: it is written again. Never throws, because
   * failed writes are counted in leds.write_failed and logged with a rate limit.
   */
  show(state: LedState): void {
    // hasOwn rejects inherited keys such as "toString" from callers that bypass the type.
    if (!Object.hasOwn(STATUS_LED_PATTERNS, state)) {
      this.io.log.warn({ state, expected: LED_STATES }, "invalid LED state ignored");
      return;
    }
    const patterns = STATUS_LED_PATTERNS[state];
    if (state !== this.current) this.io.log.info({ state, previous: this.current }, "LED state changed");
    this.current = state;
    const actPattern = this.pwr ? patterns.act : (patterns.actWithoutPwr ?? patterns.act);
    this.act?.apply(actPattern);
    this.pwr?.apply(patterns.pwr);
  }

  /**
   * Writes back the triggers, and for "none" and "timer" the brightness and
   * delays, found on open. Writes nothing for an LED this process did not
   * change, so calling it twice is safe. Never throws.
   */
  restore(): void {
    this.act?.restore();
    this.pwr?.restore();
    this.current = null;
  }
}
