// The Authentication Service. A node opens a Noise session to the AS key it
// pinned from its token file, then either redeems its one-time token (binding
// the session's static key to its node record) or, once provisioned, asks for
// its configuration again. Both answers carry the node's identity and the NMS
// and TRS endpoints and keys.
import { ServiceInfo, Signal, SignalType } from "../protocol/signaling.js";
import { Peer } from "../transport/peer.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { KeyPair } from "../protocol/crypto.js";
import { logger } from "../util/log.js";
import { CloudStore, NodeRecord, StoreError } from "./store/index.js";
import { shortKey } from "../transport/secure-endpoint.js";

const log = logger("as");

/** Sessions of clients idle this long are forgotten: AS exchanges are one request each. */
const IDLE_PEER_MS = 120_000;
/** Upper bound of concurrent AS clients, so unauthenticated initiations cannot exhaust memory. */
const MAX_PEERS = 10_000;

export interface AsOptions {
  store: CloudStore;
  identity: KeyPair;
  nms: ServiceInfo;
  trs: ServiceInfo;
  prefixLength: number;
}

export class AuthenticationService {
  readonly channel: SignalChannel<null>;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(private readonly opts: AsOptions) {
    this.channel = new SignalChannel<null>(
      opts.identity,
      {
        // Any key may talk to the AS: the messages themselves are authorized.
        acceptInitiation: (key) => {
          const existing = this.channel.engine.peer(key);
          if (existing) return { peer: existing };
          if (this.peerCount() >= MAX_PEERS) return { reject: "unknown_peer" };
          return { peer: this.channel.engine.addPeer(new Peer<null>(key, null, null, false)) };
        },
        onSignal: (peer, signal) => this.handle(peer, signal),
      },
      log,
    );
    this.pruneTimer = setInterval(() => this.prune(), IDLE_PEER_MS / 4);
    this.pruneTimer.unref();
  }

  async listen(port: number, address?: string): Promise<number> {
    const bound = await this.channel.listen(port, address);
    log.info({ port: bound, key: this.opts.identity.publicKey.toString("base64") }, "AS listening");
    return bound;
  }

  close(): void {
    clearInterval(this.pruneTimer);
    this.channel.close();
  }

  private handle(peer: Peer<null>, signal: Signal): void {
    switch (signal.type) {
      case SignalType.RedeemRequest:
        return this.redeem(peer, signal.requestId, signal.token);
      case SignalType.HelloRequest:
        return this.hello(peer, signal.requestId);
      default:
        this.channel.engine.counters.add("drop.unexpected_signal");
    }
  }

  private redeem(peer: Peer<null>, requestId: number, token: string): void {
    try {
      const node = this.opts.store.redeemToken(token, peer.publicKey);
      log.info({ node: node.id, fqdn: node.fqdn, key: shortKey(peer.publicKey) }, "token redeemed");
      this.welcome(peer, requestId, node);
    } catch (err) {
      this.fail(peer, requestId, err);
    }
  }

  private hello(peer: Peer<null>, requestId: number): void {
    const node = this.opts.store.getNodeByPublicKey(peer.publicKey);
    if (!node) {
      this.channel.engine.counters.add("as.unknown_key");
      this.channel.signal(peer, { type: SignalType.Error, requestId, code: "unknown_key", message: "this key is not provisioned; redeem a token first" });
      return;
    }
    this.welcome(peer, requestId, node);
  }

  private welcome(peer: Peer<null>, requestId: number, node: NodeRecord): void {
    this.channel.signal(peer, {
      type: SignalType.Welcome,
      requestId,
      nodeId: node.id,
      fqdn: node.fqdn,
      virtualIP: node.virtualIP,
      prefixLength: this.opts.prefixLength,
      overlayDomain: this.opts.store.overlayDomain,
      nms: this.opts.nms,
      trs: this.opts.trs,
    });
  }

  private fail(peer: Peer<null>, requestId: number, err: unknown): void {
    const code = err instanceof StoreError ? err.code : "internal_error";
    const message = err instanceof StoreError ? err.message : "internal error";
    if (!(err instanceof StoreError)) log.error({ err }, "token redemption failed");
    else log.warn({ reason: code, key: shortKey(peer.publicKey) }, "token redemption rejected");
    this.channel.engine.counters.add(`as.${code}`);
    this.channel.signal(peer, { type: SignalType.Error, requestId, code, message });
  }

  private peerCount(): number {
    let n = 0;
    for (const _ of this.channel.engine.allPeers()) n++;
    return n;
  }

  private prune(): void {
    const now = Date.now();
    for (const peer of [...this.channel.engine.allPeers()]) {
      const last = Math.max(peer.current?.lastReceivedMs ?? 0, peer.lastHandshakeMs);
      if (now - last > IDLE_PEER_MS) this.channel.engine.removePeer(peer);
    }
  }
}
