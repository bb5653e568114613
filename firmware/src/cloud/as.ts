// The Authentication Service. A node opens a Noise session to the AS key it
// pinned from its token file, then either redeems its one-time token (binding
// the session's static key to its node record) or, once provisioned, asks for
// its configuration again. Both answers carry the node's identity and the NMS
// and TRS endpoints and keys.
import { createHash } from "node:crypto";
import { GENERAL_NODES_PAGE_SIZE, GeneralNodeEntry, ServiceInfo, Signal, SignalType } from "../protocol/signaling.js";
import { Peer } from "../transport/peer.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { KeyPair } from "../protocol/crypto.js";
import { logger } from "../util/log.js";
import { CloudStore, NodeRecord, StoreError } from "./store/index.js";
import { shortKey } from "../transport/secure-endpoint.js";

const log = logger("as");

/** Sessions of clients idle this long are forgotten: AS exchanges are one request each. */
const IDLE_PEER_MS = 120_000;
/** Upper bound of AS clients held at once, so unauthenticated initiations cannot exhaust memory. */
const MAX_PEERS = 4_096;

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
  /** AS peers by key, in order of last use. */
  private readonly recent = new Map<string, Peer<null>>();

  constructor(private readonly opts: AsOptions) {
    this.channel = new SignalChannel<null>(
      opts.identity,
      {
        // Any key may talk to the AS: the messages themselves are authorized.
        acceptInitiation: (key) => ({ peer: this.admit(key) }),
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
      case SignalType.GeneralNodesRequest:
        return this.listGeneralNodes(peer, signal.requestId, signal.offset);
      case SignalType.BindKeyRequest:
        return this.bindKey(peer, signal.requestId, signal.nodeId, signal.publicKey);
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

  /** Returns the adapter this session's key belongs to, or sends an error and returns null. */
  private adapterOf(peer: Peer<null>, requestId: number): NodeRecord | null {
    const node = this.opts.store.getNodeByPublicKey(peer.publicKey);
    if (node?.kind === "adapter") return node;
    this.channel.engine.counters.add("as.not_an_adapter");
    this.channel.signal(peer, { type: SignalType.Error, requestId, code: "not_an_adapter", message: "only a provisioned adapter may manage general nodes" });
    return null;
  }

  private listGeneralNodes(peer: Peer<null>, requestId: number, offset: number): void {
    const adapter = this.adapterOf(peer, requestId);
    if (!adapter) return;
    const all = this.opts.store.listGeneralNodes(adapter.id).map(toEntry);
    const version = registryVersion(all);
    const entries = all.slice(offset, offset + GENERAL_NODES_PAGE_SIZE);
    this.channel.signal(peer, { type: SignalType.GeneralNodes, requestId, version, total: all.length, offset, entries });
  }

  private bindKey(peer: Peer<null>, requestId: number, nodeId: number, publicKey: Buffer): void {
    const adapter = this.adapterOf(peer, requestId);
    if (!adapter) return;
    try {
      this.opts.store.bindGeneralNodeKey(adapter.id, nodeId, publicKey);
      this.channel.signal(peer, { type: SignalType.BindKeyAck, requestId, nodeId });
    } catch (err) {
      this.fail(peer, requestId, err);
    }
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

  /**
   * Returns the peer for key, most recently used last. When the table is full
   * the least recently used peer is dropped, so keys made up by a flood push
   * each other out instead of locking new nodes out.
   */
  private admit(key: Buffer): Peer<null> {
    const hex = key.toString("hex");
    const existing = this.recent.get(hex);
    if (existing) {
      this.recent.delete(hex);
      this.recent.set(hex, existing);
      return existing;
    }
    if (this.recent.size >= MAX_PEERS) {
      const [oldestKey, oldest] = this.recent.entries().next().value as [string, Peer<null>];
      this.recent.delete(oldestKey);
      this.channel.engine.removePeer(oldest);
      this.channel.engine.counters.add("as.peers_evicted");
    }
    const peer = this.channel.engine.addPeer(new Peer<null>(key, null, null, false));
    this.recent.set(hex, peer);
    return peer;
  }

  private prune(): void {
    const now = Date.now();
    for (const [hex, peer] of this.recent) {
      const last = Math.max(peer.current?.lastReceivedMs ?? 0, peer.lastHandshakeMs);
      if (now - last <= IDLE_PEER_MS) continue;
      this.recent.delete(hex);
      this.channel.engine.removePeer(peer);
    }
  }
}

function toEntry(n: NodeRecord): GeneralNodeEntry {
  return { nodeId: n.id, fqdn: n.fqdn, mac: n.mac ?? "00:00:00:00:00:00", virtualIP: n.virtualIP, publicKey: n.publicKey };
}

/** Computes a digest of the whole list; the adapter refetches every page only when it changes. */
function registryVersion(entries: GeneralNodeEntry[]): number {
  const h = createHash("sha256");
  for (const e of entries) h.update(`${e.nodeId}|${e.fqdn}|${e.mac}|${e.virtualIP}|${e.publicKey?.toString("hex") ?? ""}\n`);
  return h.digest().readUInt32BE(0);
}
