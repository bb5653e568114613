// Binds a SecureEndpoint to a UDP socket and decodes the signaling messages
// that arrive on its sessions. Cloud services and the node daemon both sit on
// one of these; what differs is who may connect and what a message does.
import { KeyPair } from "../protocol/crypto.js";
import { Endpoint, formatEndpoint } from "../protocol/endpoint.js";
import { ProtocolError } from "../protocol/errors.js";
import { Signal, decodeSignal, encodeSignal, isSignal } from "../protocol/signaling.js";
import { Logger, RateLimitedLog } from "../util/log.js";
import { PeerPath, Source } from "./path.js";
import { Peer } from "./peer.js";
import { EndpointHooks, SecureEndpoint } from "./secure-endpoint.js";
import { UdpSocket, bindUdp } from "./udp.js";

export interface ChannelHooks<Tag> extends Omit<EndpointHooks<Tag>, "onMessage"> {
  onSignal(peer: Peer<Tag>, signal: Signal, source: Source): void;
  /** Plaintexts that are not signaling (IP packets); dropped when absent. */
  onPacket?(peer: Peer<Tag>, packet: Buffer, source: Source): void;
  /** Datagrams for relay paths; the channel has no relay of its own. */
  sendRelay?(datagram: Buffer, path: Extract<PeerPath, { kind: "relay" }>): void;
}

export class SignalChannel<Tag = unknown> {
  readonly engine: SecureEndpoint<Tag>;
  private socket: UdpSocket | null = null;
  private readonly badSignalLog: RateLimitedLog;
  private readonly sendErrorLog: RateLimitedLog;

  constructor(
    identity: KeyPair,
    private readonly hooks: ChannelHooks<Tag>,
    private readonly log: Logger,
  ) {
    this.badSignalLog = new RateLimitedLog(log);
    this.sendErrorLog = new RateLimitedLog(log);
    this.engine = new SecureEndpoint<Tag>(
      identity,
      (datagram, path) => this.sendDatagram(datagram, path),
      {
        acceptInitiation: (key, data, source) => hooks.acceptInitiation(key, data, source),
        onMessage: (peer, plaintext, source) => this.dispatch(peer, plaintext, source),
        onSessionEstablished: hooks.onSessionEstablished?.bind(hooks),
        onHandshakeFailed: hooks.onHandshakeFailed?.bind(hooks),
        onPathChanged: hooks.onPathChanged?.bind(hooks),
      },
      log,
    );
  }

  async listen(port: number, address?: string): Promise<number> {
    this.socket = await bindUdp(
      port,
      (datagram, from) => this.engine.receive(datagram, { kind: "direct", endpoint: from }),
      (err, to) => {
        this.engine.counters.add("send.errors");
        this.sendErrorLog.warn(`send:${(err as NodeJS.ErrnoException).code}`, { err, endpoint: to.port ? formatEndpoint(to) : undefined }, "UDP socket error");
      },
      address,
    );
    this.engine.start();
    return this.socket.port;
  }

  get port(): number {
    return this.socket?.port ?? 0;
  }

  sendDatagram(datagram: Buffer, path: PeerPath): void {
    if (path.kind === "direct") {
      this.socket?.send(datagram, path.endpoint);
    } else if (this.hooks.sendRelay) {
      this.hooks.sendRelay(datagram, path);
    } else {
      this.engine.counters.add("drop.no_relay");
    }
  }

  sendDirect(datagram: Buffer, to: Endpoint): void {
    this.socket?.send(datagram, to);
  }

  signal(peer: Peer<Tag>, signal: Signal): void {
    this.engine.send(peer, encodeSignal(signal));
  }

  close(): void {
    this.engine.stop();
    this.socket?.close();
    this.socket = null;
  }

  private dispatch(peer: Peer<Tag>, plaintext: Buffer, source: Source): void {
    if (!isSignal(plaintext)) {
      if (this.hooks.onPacket) this.hooks.onPacket(peer, plaintext, source);
      else this.engine.counters.add("drop.unexpected_packet");
      return;
    }
    let signal: Signal;
    try {
      signal = decodeSignal(plaintext);
    } catch (err) {
      const reason = err instanceof ProtocolError ? err.reason : "bad_field";
      this.engine.counters.add(`drop.signal_${reason}`);
      this.badSignalLog.warn(`signal:${reason}`, { reason, err }, "dropped malformed signaling message");
      return;
    }
    this.hooks.onSignal(peer, signal, source);
  }
}
