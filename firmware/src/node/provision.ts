// First start of a node: redeem the one-time token with the AS whose key the
// token file pins, store the identity, then retire the token file.
//
// Crash safety: the private key is on disk before the token leaves the
// device, and the AS accepts the same token again from the same key, so a
// crash at any step is finished by the next start. The token file is
// deleted only after identity.json is durably written.
import fs from "node:fs";
import { Signal, SignalType } from "../protocol/signaling.js";
import { Peer } from "../transport/peer.js";
import { pickEndpoint } from "../transport/reachability.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { Logger } from "../util/log.js";
import { NodeIdentity, saveIdentity } from "./identity.js";
import { RequestTimeoutError, RequestTracker, SignalError } from "./requests.js";
import { TokenFile } from "./token-file.js";
import { NodePeerTag } from "./tunnels.js";

/** Redemption errors that no retry can fix: the operator must issue a new token. */
export const FATAL_TOKEN_CODES = new Set(["token_invalid", "token_expired", "token_reused", "key_in_use", "invalid_kind"]);

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
      // Exponential backoff with full jitter, so a fleet restarting together does not hit the AS in step.
      const backoffMs = Math.random() * Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** attempt);
      log.warn({ err: err.message, attempt, retryInMs: Math.round(backoffMs) }, "no response from the AS, retrying");
      await new Promise((r) => setTimeout(r, backoffMs));
    }
  }
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
  try {
    fs.rmSync(tokenFilePath, { force: true });
  } catch (err) {
    log.warn({ err, file: tokenFilePath }, "could not delete the used token file; delete it by hand");
  }
  log.info({ node: identity.nodeId, fqdn: identity.fqdn, virtualIP: identity.virtualIP }, "provisioned");
  return identity;
}
