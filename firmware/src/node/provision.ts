// First start of a node: redeem the one-time token with the AS whose key the
// token file pins, store the identity, then retire the token file.
//
// Crash safety: the private key is on disk before the token leaves the
// device, and the AS accepts the same token again from the same key, so a
// crash at any step is finished by the next start. The token file is
// deleted only after identity.json is durably written.
//
// Test hook: REDEMPTION_STEPS names the points between the steps. With
// --allow-crash-hook, `cyphonic node` and `cyphonic adapter` honour
// CYPHONIC_PROVISION_CRASH_AT=STEP, which kills the process with SIGKILL
// right after STEP, as a power cut would.
import fs from "node:fs";
import { Signal, SignalType } from "../protocol/signaling.js";
import { Peer } from "../transport/peer.js";
import { pickEndpoint } from "../transport/reachability.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { Logger } from "../util/log.js";
import { NodeIdentity, saveIdentity } from "./identity.js";
import { RequestTimeoutError, RequestTracker, SignalError } from "./requests.js";
import { TokenFile, readTokenFile } from "./token-file.js";
import { NodePeerTag } from "./tunnels.js";

/** Redemption errors that no retry can fix: the operator must issue a new token. */
export const FATAL_TOKEN_CODES = new Set(["token_invalid", "token_expired", "token_reused", "key_in_use", "invalid_kind"]);

/** The environment variable that names the step after which the test crash hook kills the process. */
export const CRASH_HOOK_VARIABLE = "CYPHONIC_PROVISION_CRASH_AT";

/** The points of a token redemption at which the crash hook can fire, in order. */
export const REDEMPTION_STEPS = [
  // private.key is on disk (the daemon writes it when it is constructed), and the token was not sent yet.
  "key-saved",
  // The AS accepted the token and sent its Welcome, and identity.json is not written yet.
  "as-answered",
  // identity.json is durably written, and the token file is not deleted yet.
  "identity-saved",
] as const;

export type RedemptionStep = (typeof REDEMPTION_STEPS)[number];

export function isRedemptionStep(name: string): name is RedemptionStep {
  return (REDEMPTION_STEPS as readonly string[]).includes(name);
}

/** The test hook that runs after each redemption step; none unless installRedemptionCrashHook installed one. */
let afterRedemptionStep: ((step: RedemptionStep) => void) | undefined;

/**
 * Installs the test hook that kills the process with SIGKILL right after the
 * step `target` names (the value of CRASH_HOOK_VARIABLE). Without `allowed`
 * (--allow-crash-hook) a set variable is ignored with one warning, so a
 * stray variable on a device cannot stop provisioning. Throws a RangeError
 * when the hook is allowed and `target` is not a step.
 */
export function installRedemptionCrashHook(target: string | undefined, allowed: boolean, log: Logger): void {
  if (!target) return;
  if (!allowed) {
    log.warn({ variable: CRASH_HOOK_VARIABLE }, "ignoring the crash test hook, because --allow-crash-hook is not set");
    return;
  }
  if (!isRedemptionStep(target)) {
    throw new RangeError(`${CRASH_HOOK_VARIABLE} must be one of ${REDEMPTION_STEPS.join(", ")}, got "${target}"`);
  }
  afterRedemptionStep = (step) => {
    // SIGKILL, like a power cut, runs no exit handlers and flushes nothing.
    if (step === target) process.kill(process.pid, "SIGKILL");
  };
}

/** Runs the test hook, if one is installed, after `step` is done. */
export function redemptionStepDone(step: RedemptionStep): void {
  afterRedemptionStep?.(step);
}

const REQUEST_TIMEOUT_MS = 5_000;
const MAX_BACKOFF_MS = 60_000;

export class ProvisioningError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ProvisioningError";
  }
}

export async function redeemToken(
  channel: SignalChannel<NodePeerTag>,
  requests: RequestTracker,
  token: TokenFile,
  log: Logger,
): Promise<Extract<Signal, { type: typeof SignalType.Welcome }>> {
  const asPeer =
    channel.engine.peer(token.asKey) ??
    channel.engine.addPeer(new Peer<NodePeerTag>(token.asKey, { kind: "direct", endpoint: pickEndpoint(token.asEndpoints) }, { kind: "service", service: "as" }, true));
  for (let attempt = 1; ; attempt++) {
    try {
      const reply = await requests.request(
        "token redemption",
        (requestId) => ({ type: SignalType.RedeemRequest, requestId, token: token.token }),
        (s) => channel.signal(asPeer, s),
        REQUEST_TIMEOUT_MS,
      );
      if (reply.type !== SignalType.Welcome) throw new ProvisioningError("unexpected_reply", `unexpected AS response type 0x${reply.type.toString(16)} to token redemption`);
      return reply;
    } catch (err) {
      if (err instanceof SignalError && FATAL_TOKEN_CODES.has(err.code)) {
        throw new ProvisioningError(err.code, `the AS rejected the token (${err.code}): ${err.message}; ask the operator for a new token`);
      }
      if (!(err instanceof RequestTimeoutError) && !(err instanceof SignalError)) throw err;
      // While no session with the AS is up, every resend of the request waits
      // in the peer's queue. Dropping the timed-out copies keeps an AS that
      // comes back from receiving the requests of all past attempts at once.
      asPeer.queue.length = 0;
      // Exponential backoff with full jitter, so a fleet restarting together does not hit the AS in step.
      const backoffMs = Math.random() * Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** attempt);
      log.warn({ err: err.message, attempt, retryInMs: Math.round(backoffMs) }, "no response from the AS, retrying");
      await new Promise((r) => setTimeout(r, backoffMs));
    }
  }
}

function deleteTokenFile(tokenFilePath: string, log: Logger): void {
  try {
    fs.rmSync(tokenFilePath, { force: true });
  } catch (err) {
    log.warn({ err, file: tokenFilePath }, "could not delete the used token file; delete it by hand");
  }
}

/**
 * Deletes a token file that a provisioned node still has: power was cut
 * after identity.json was written and before the file was deleted, and the
 * secret must not stay on disk. A file for another AS is not this node's
 * used token, so it is left alone with a warning.
 */
export function retireLeftoverTokenFile(tokenFilePath: string, identity: NodeIdentity, log: Logger): void {
  if (!fs.existsSync(tokenFilePath)) return;
  let token: TokenFile;
  try {
    token = readTokenFile(tokenFilePath);
  } catch (err) {
    log.warn({ err: (err as Error).message, file: tokenFilePath }, "the node is provisioned; ignoring an unreadable token file");
    return;
  }
  if (!token.asKey.equals(identity.as.staticKey)) {
    log.warn({ file: tokenFilePath }, "the node is provisioned with another AS; ignoring the token file, which names a different AS key");
    return;
  }
  deleteTokenFile(tokenFilePath, log);
  log.info({ file: tokenFilePath }, "deleted the used token file that an interrupted provisioning left");
}

export function completeProvisioning(
  stateDir: string,
  tokenFilePath: string,
  token: TokenFile,
  welcome: Extract<Signal, { type: typeof SignalType.Welcome }>,
  log: Logger,
): NodeIdentity {
  const identity: NodeIdentity = {
    nodeId: welcome.nodeId,
    fqdn: welcome.fqdn,
    virtualIP: welcome.virtualIP,
    prefixLength: welcome.prefixLength,
    overlayDomain: welcome.overlayDomain,
    as: { endpoints: token.asEndpoints, staticKey: token.asKey },
    nms: welcome.nms,
    trs: welcome.trs,
  };
  saveIdentity(stateDir, identity);
  redemptionStepDone("identity-saved");
  deleteTokenFile(tokenFilePath, log);
  log.info({ node: identity.nodeId, fqdn: identity.fqdn, virtualIP: identity.virtualIP }, "provisioned");
  return identity;
}
