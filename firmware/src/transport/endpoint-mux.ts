// One UDP socket shared by several local identities (an adapter speaks for
// itself and for each general node behind it, all from one port, so the NMS
// sees one NAPT mapping). Transport messages and handshake responses go to
// the endpoint that owns their receiver index; a handshake initiation goes to
// the endpoint whose static key its mac1 was computed for.
import { MessageType } from "../protocol/constants.js";
import { Endpoint, formatEndpoint } from "../protocol/endpoint.js";
import { Counters } from "../util/counters.js";
import { Logger, RateLimitedLog } from "../util/log.js";
import { HandshakeClock } from "./handshake-clock.js";
import { IndexRegistry } from "./index-registry.js";
import { Source } from "./path.js";
import { SecureEndpoint } from "./secure-endpoint.js";
import { SessionCarrier } from "./session-carrier.js";
import { UdpSocket, bindUdp } from "./udp.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyEndpoint = SecureEndpoint<any>;

export class EndpointMux {
  readonly registry = new IndexRegistry<AnyEndpoint>();
  /** Shared by the endpoints on this socket; the node daemon gives it a file so it survives restarts. */
  clock = new HandshakeClock();
  readonly counters = new Counters();
  private readonly endpoints = new Set<AnyEndpoint>();
  private socket: UdpSocket | null = null;
  /** Set when another process carries the sessions: each attached endpoint gets a carrier from it. */
  carrierFactory: ((endpoint: AnyEndpoint) => SessionCarrier<unknown>) | null = null;
  private readonly sendErrorLog: RateLimitedLog;

  constructor(log: Logger) {
    this.sendErrorLog = new RateLimitedLog(log);
  }

  async listen(port: number, address?: string): Promise<number> {
    this.socket = await bindUdp(
      port,
      (datagram, from) => this.receive(datagram, { kind: "direct", endpoint: from }),
      (err, to) => {
        this.counters.add("send.errors");
        const code = (err as NodeJS.ErrnoException).code ?? "unknown";
        this.sendErrorLog.warn(`send:${code}`, { err, endpoint: to.port ? formatEndpoint(to) : undefined }, "UDP socket error");
      },
      address,
    );
    return this.socket.port;
  }

  /**
   * Uses a socket that lives elsewhere (the dataplane worker's); its owner
   * feeds received datagrams to receive().
   */
  adopt(socket: UdpSocket): void {
    this.socket = socket;
  }

  get port(): number {
    return this.socket?.port ?? 0;
  }

  attach(endpoint: AnyEndpoint): void {
    this.endpoints.add(endpoint);
    if (this.carrierFactory) endpoint.carrier = this.carrierFactory(endpoint);
  }

  detach(endpoint: AnyEndpoint): void {
    this.endpoints.delete(endpoint);
    endpoint.carrier?.release();
    endpoint.carrier = null;
  }

  send(datagram: Buffer, to: Endpoint): void {
    this.socket?.send(datagram, to);
  }

  /** Hands a datagram to the endpoint it is addressed to; counts the ones addressed to none. */
  receive(datagram: Buffer, source: Source): void {
    const type = datagram.length >= 4 ? datagram[0] : -1;
    let owner: AnyEndpoint | undefined;
    if (type === MessageType.Transport && datagram.length >= 8) {
      owner = this.registry.owner(datagram.readUInt32BE(4));
    } else if (type === MessageType.HandshakeResponse && datagram.length >= 12) {
      owner = this.registry.owner(datagram.readUInt32BE(8));
    } else if (type === MessageType.HandshakeInitiation) {
      for (const e of this.endpoints) {
        if (e.matchesMac1(datagram)) {
          owner = e;
          break;
        }
      }
      if (!owner) {
        this.counters.add("drop.bad_mac");
        return;
      }
    }
    if (owner) {
      owner.receive(datagram, source);
      return;
    }
    // Unknown index or type: any endpoint classifies and counts it the same way.
    const first = this.endpoints.values().next().value as AnyEndpoint | undefined;
    if (first) first.receive(datagram, source);
    else this.counters.add("drop.no_endpoint");
  }

  close(): void {
    for (const e of this.endpoints) e.stop();
    this.socket?.close();
    this.socket = null;
  }
}
