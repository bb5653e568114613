// Provisioning of a simulated node with the project's own code: a Noise
// session to the AS on the node's socket and the token redemption of the
// node daemon (node/provision.ts), without the identity files on disk.
import { KeyPair } from "../../firmware/src/protocol/crypto.js";
import { Signal, SignalType } from "../../firmware/src/protocol/signaling.js";
import { RequestTracker } from "../../firmware/src/node/requests.js";
import { redeemToken } from "../../firmware/src/node/provision.js";
import { TokenFile } from "../../firmware/src/node/token-file.js";
import { NodePeerTag } from "../../firmware/src/node/tunnels.js";
import { EndpointMux } from "../../firmware/src/transport/endpoint-mux.js";
import { SignalChannel } from "../../firmware/src/transport/signal-channel.js";
import { Logger } from "../../firmware/src/util/log.js";

export type Welcome = Extract<Signal, { type: typeof SignalType.Welcome }>;

/**
 * Redeems the token for `keys` over `mux` and returns the AS's welcome. As in
 * the node daemon, the channel to the AS lives only for the redemption.
 */
export async function provisionNode(mux: EndpointMux, keys: KeyPair, token: TokenFile, requests: RequestTracker, log: Logger): Promise<Welcome> {
  const channel = new SignalChannel<NodePeerTag>(keys, { acceptInitiation: () => ({ reject: "unknown_peer" }), onSignal: (_peer, signal) => requests.complete(signal) }, log, mux);
  try {
    return await redeemToken(channel, requests, token, log);
  } finally {
    channel.close();
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `task` over every item with at most `limit` in flight, and resolves when all settled. */
export async function forEachLimited<T>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Prints one JSON line on stdout, the simulators' only channel to the benchmark. */
export function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}
