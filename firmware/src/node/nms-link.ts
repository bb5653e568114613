// The node's link to the NMS: registration with its local endpoints,
// keep-alives that hold the NAPT mapping open and tell the node what address
// the NMS sees, and route requests. When keep-alives go unanswered (NMS
// restarted and lost the session, or the path broke) the link starts a new
// handshake and registers again by itself.
import os from "node:os";
import { Endpoint, formatEndpoint, sameEndpoint } from "../protocol/endpoint.js";
import { RouteInfo, RouteTarget, ServiceInfo, Signal, SignalType } from "../protocol/signaling.js";
import { Peer } from "../transport/peer.js";
import { pickEndpoint } from "../transport/reachability.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { Logger } from "../util/log.js";
import { RequestTracker } from "./requests.js";
import { NodePeerTag } from "./tunnels.js";

const REGISTER_TIMEOUT_MS = 5_000;
const ROUTE_TIMEOUT_MS = 5_000;
/** Keep-alive interval used until the NMS states its own. */
const DEFAULT_KEEPALIVE_MS = 5_000;
/** Missed keep-alive responses before the session counts as lost. */
const MISSED_ACKS_BEFORE_RESET = 2;

export interface NmsStatus {
  registered: boolean;
  observed: string | null;
  napt: boolean | null;
  lastAckMs: number;
  registrations: number;
}

export class NmsLink {
  readonly peer: Peer<NodePeerTag>;
  private keepaliveMs = DEFAULT_KEEPALIVE_MS;
  private seq = 0;
  private lastAckMs = 0;
  private lastKeepaliveSentMs = 0;
  private registered = false;
  private registering = false;
  private observed: Endpoint | null = null;
  private napt: boolean | null = null;
  private registrations = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly channel: SignalChannel<NodePeerTag>,
    private readonly requests: RequestTracker,
    private readonly nms: ServiceInfo,
    private readonly localPort: () => number,
    /** The overlay's own interfaces, whose addresses are not underlay endpoints. */
    private readonly overlayInterfaces: string[],
    private readonly log: Logger,
  ) {
    this.peer = channel.engine.addPeer(new Peer<NodePeerTag>(nms.staticKey, { kind: "direct", endpoint: pickEndpoint(nms.endpoints, overlayInterfaces) }, { kind: "service", service: "nms" }, true));
  }

  start(): void {
    void this.register();
    this.timer = setInterval(() => this.tick(), 1_000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  get napted(): boolean {
    return this.napt === true;
  }

  status(): NmsStatus {
    return {
      registered: this.registered,
      observed: this.observed ? formatEndpoint(this.observed) : null,
      napt: this.napt,
      lastAckMs: this.lastAckMs,
      registrations: this.registrations,
    };
  }

  /** Handles NMS replies that are not responses to a request. */
  handle(signal: Signal): boolean {
    if (signal.type !== SignalType.KeepaliveAck) return false;
    this.lastAckMs = Date.now();
    if (this.observed && !sameEndpoint(this.observed, signal.observed)) {
      this.log.info({ endpoint: formatEndpoint(signal.observed) }, "NMS sees a new address for this node");
    }
    this.observed = signal.observed;
    return true;
  }

  async requestRoute(target: RouteTarget): Promise<RouteInfo> {
    const reply = await this.requests.request(
      "route request",
      (requestId) => ({ type: SignalType.RouteRequest, requestId, target }),
      (s) => this.channel.signal(this.peer, s),
      ROUTE_TIMEOUT_MS,
    );
    if (reply.type !== SignalType.RouteResponse) throw new Error(`unexpected NMS response type 0x${reply.type.toString(16)} to a route request`);
    return reply.route;
  }

  /**
   * Follows a change of this host's addresses: the NMS is reached over the
   * family the host now has, and a registration from the new address tells
   * the NMS where the node went (it then re-routes the node's tunnels).
   */
  underlayChanged(): void {
    this.peer.path = { kind: "direct", endpoint: pickEndpoint(this.nms.endpoints, this.overlayInterfaces) };
    void this.register();
  }

  /** Re-registers at once, as after an address change of this host. */
  async register(): Promise<void> {
    if (this.registering) return;
    this.registering = true;
    try {
      const reply = await this.requests.request(
        "registration",
        (requestId) => ({ type: SignalType.Register, requestId, localEndpoints: localEndpoints(this.localPort(), this.overlayInterfaces) }),
        (s) => this.channel.signal(this.peer, s),
        REGISTER_TIMEOUT_MS,
      );
      if (reply.type !== SignalType.Registered) throw new Error(`unexpected reply type 0x${reply.type.toString(16)}`);
      this.registered = true;
      this.registrations++;
      this.observed = reply.observed;
      this.napt = reply.napt;
      this.keepaliveMs = reply.keepaliveIntervalMs;
      this.lastAckMs = Date.now();
      this.log.info({ endpoint: formatEndpoint(reply.observed), napt: reply.napt }, "registered with NMS");
    } catch (err) {
      this.registered = false;
      this.log.warn({ err: (err as Error).message }, "registration with NMS failed, retrying");
    } finally {
      this.registering = false;
    }
  }

  private tick(): void {
    const now = Date.now();
    if (!this.registered) {
      if (!this.registering) this.resetSession("not registered");
      return;
    }
    if (now - this.lastAckMs > (MISSED_ACKS_BEFORE_RESET + 0.5) * this.keepaliveMs) {
      this.registered = false;
      this.resetSession("keep-alives unanswered");
      return;
    }
    if (now - this.lastKeepaliveSentMs >= this.keepaliveMs) {
      this.lastKeepaliveSentMs = now;
      this.channel.signal(this.peer, { type: SignalType.Keepalive, seq: ++this.seq >>> 0 });
    }
  }

  /** Drops the current session so the next message starts a fresh handshake, then registers. */
  private resetSession(reason: string): void {
    this.log.warn({ reason }, "NMS session lost, reconnecting");
    this.peer.current = null;
    this.peer.previous = null;
    // The host may have moved to a network of another address family.
    this.peer.path = { kind: "direct", endpoint: pickEndpoint(this.nms.endpoints, this.overlayInterfaces) };
    void this.register();
  }
}

/** This host's addresses that a peer on the same site could use, with the tunnel port. */
export function localEndpoints(port: number, excludeInterfaces: string[] = []): Endpoint[] {
  const out: Endpoint[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (excludeInterfaces.includes(name)) continue;
    for (const a of addrs ?? []) {
      if (a.internal || (a.family === "IPv6" && a.scopeid)) continue;
      out.push({ address: a.address, port });
    }
  }
  return out.slice(0, 16);
}
