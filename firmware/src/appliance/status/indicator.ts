// Drives the status LEDs from the adapter's state. The adapter daemon offers
// getters (identity, NMS registration, leased general nodes), which the
// indicator polls once a second. The caller also calls refresh() on a lease
// change, so a new lease shows at once.
import { LedState } from "../leds/index.js";
import { AdapterObservation, AdapterPhase, adapterLedState } from "./led-state.js";

/** How often the indicator reads the adapter's state. A registration change shows within this time. */
export const STATUS_POLL_MS = 1_000;

/** The adapter state the indicator reads: AdapterDaemon implements it. */
export interface AdapterStatusSource {
  readonly hasIdentity: boolean;
  readonly registeredWithNms: boolean;
  readonly leasedGeneralNodes: number;
}

/** Output of the indicator: StatusLeds, or a fake in tests. */
export interface LedDisplay {
  show(state: LedState): void;
}

const NO_SOURCE: AdapterObservation = { hasIdentity: false, registered: false, leasedGeneralNodes: 0 };

export class AdapterStatusIndicator {
  private phase: AdapterPhase = "booting";
  private source: AdapterStatusSource | null = null;
  private timer: NodeJS.Timeout | null = null;
  private current: LedState | null = null;

  constructor(
    private readonly display: LedDisplay,
    private readonly pollMs = STATUS_POLL_MS,
  ) {}

  /** State last shown, or null before the first refresh(). */
  get state(): LedState | null {
    return this.current;
  }

  /** Starts reading `source` every pollMs. The timer does not keep the process alive. */
  watch(source: AdapterStatusSource): void {
    this.source = source;
    this.stopPolling();
    this.timer = setInterval(() => this.refresh(), this.pollMs);
    this.timer.unref();
    this.refresh();
  }

  setPhase(phase: AdapterPhase): void {
    this.phase = phase;
    this.refresh();
  }

  /** Shows the state for the current phase and observation. Showing an unchanged state writes nothing to the LEDs. */
  refresh(): void {
    const observation = this.observe();
    this.current = adapterLedState(this.phase, observation);
    this.display.show(this.current);
  }

  /** Stops polling and leaves the LEDs as they are; the caller restores them. */
  stop(): void {
    this.stopPolling();
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private observe(): AdapterObservation {
    const source = this.source;
    if (!source) return NO_SOURCE;
    return { hasIdentity: source.hasIdentity, registered: source.registeredWithNms, leasedGeneralNodes: source.leasedGeneralNodes };
  }
}
