// The Tunnel Relay Service. Nodes that cannot reach each other directly send
// their tunnel datagrams here wrapped in RelayData on their own session with
// the TRS; the TRS forwards each one to the other end of the route, on that
// end's session, and to no one else. It never holds tunnel keys: the inner
// datagram stays encrypted end to end.
import { KeyPair } from "../protocol/crypto.js";
import { Signal, SignalType } from "../protocol/signaling.js";
import { Source } from "../transport/path.js";
import { Peer } from "../transport/peer.js";
import { SignalChannel } from "../transport/signal-channel.js";
import { RateLimitedLog, logger } from "../util/log.js";
import { CloudStore, RouteRecord } from "./store/index.js";

const log = logger("trs");

interface NodeTag {
  nodeId: number;
}

export interface TrsOptions {
  store: CloudStore;
  identity: KeyPair;
}

export class TunnelRelayService {
  readonly channel: SignalChannel<NodeTag>;
  private readonly byNode = new Map<number, Peer<NodeTag>>();
  private readonly dropLog = new RateLimitedLog(log);
  /** Routes never change their ends once created, so a found route is cached for good. */
  private readonly routeCache = new Map<number, RouteRecord>();

  constructor(private readonly opts: TrsOptions) {
    this.channel = new SignalChannel<NodeTag>(
      opts.identity,
      {
        acceptInitiation: (key) => {
          const node = opts.store.getNodeByPublicKey(key);
          if (!node) return { reject: "unknown_peer" };
          const peer = this.channel.engine.peer(key) ?? this.channel.engine.addPeer(new Peer<NodeTag>(key, null, { nodeId: node.id }, false));
          this.byNode.set(node.id, peer);
          return { peer };
        },
        onSignal: (peer, signal, source) => this.handle(peer, signal, source),
      },
      log,
    );
  }

  async listen(port: number, address?: string): Promise<number> {
    const bound = await this.channel.listen(port, address);
    log.info({ port: bound, key: this.opts.identity.publicKey.toString("base64") }, "TRS listening");
    return bound;
  }

  close(): void {
    this.channel.close();
  }

  private handle(peer: Peer<NodeTag>, signal: Signal, source: Source): void {
    const counters = this.channel.engine.counters;
    // Nodes that relay check the TRS is alive with these, so a restarted TRS
    // (which lost their sessions) is noticed within seconds.
    if (signal.type === SignalType.Keepalive && source.kind === "direct") {
      this.channel.signal(peer, { type: SignalType.KeepaliveAck, seq: signal.seq, observed: source.endpoint });
      return;
    }
    if (signal.type !== SignalType.RelayData) {
      counters.add("drop.unexpected_signal");
      return;
    }
    const route = this.route(signal.routeId);
    const nodeId = peer.tag.nodeId;
    let otherId: number | null = null;
    if (route?.nodeA === nodeId) otherId = route.nodeB;
    else if (route?.nodeB === nodeId) otherId = route.nodeA;
    if (!route || otherId === null) {
      counters.add("relay.drop_unknown_route");
      this.dropLog.warn("unknown_route", { node: peer.tag.nodeId, route: signal.routeId }, "relay datagram for a route this node is not on");
      return;
    }
    const other = this.byNode.get(otherId);
    if (!other?.current) {
      counters.add("relay.drop_peer_offline");
      return;
    }
    counters.add("relay.packets");
    counters.add("relay.bytes", signal.datagram.length);
    this.channel.signal(other, { type: SignalType.RelayData, routeId: route.routeId, datagram: signal.datagram });
  }

  private route(routeId: number): RouteRecord | undefined {
    const cached = this.routeCache.get(routeId);
    if (cached) return cached;
    const route = this.opts.store.getRoute(routeId);
    if (route) this.routeCache.set(routeId, route);
    return route;
  }
}
