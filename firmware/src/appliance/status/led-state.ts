// The adapter's status LED state, derived from the stage of its start and
// from what it observes. docs/leds.md lists the patterns of each state.
import { LedState } from "../leds/index.js";

/**
 * Stage of the adapter's start: "booting" until the daemon starts,
 * "provisioning" when it starts without an identity and so redeems a token
 * first, "running" when it starts with one, and "failed" after a fatal start
 * error.
 */
export type AdapterPhase = "booting" | "provisioning" | "running" | "failed";

export interface AdapterObservation {
  /** Whether the adapter has its identity: identity.json loaded, or the token redeemed. */
  hasIdentity: boolean;
  /** Whether the adapter's own member is registered with the NMS. */
  registered: boolean;
  /** General nodes holding an unexpired DHCP lease. */
  leasedGeneralNodes: number;
}

/**
 * Derives the LED state. The phase decides until the identity exists, the
 * NMS registration after that, and a lease turns "online" into "serving".
 * "serving" counts DHCP leases and not tunnels, because a device with a lease
 * is served (DHCP, DNS, forwarding) before it sends its first packet into the
 * overlay, and a tunnel can stay up after the device is unplugged.
 */
export function adapterLedState(phase: AdapterPhase, observation: AdapterObservation): LedState {
  if (phase === "failed") return "error";
  if (phase === "booting") return "booting";
  if (!observation.hasIdentity) return phase === "provisioning" ? "provisioning" : "booting";
  if (!observation.registered) return "waiting-for-cloud";
  return observation.leasedGeneralNodes > 0 ? "serving" : "online";
}
