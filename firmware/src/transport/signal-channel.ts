// Binds a SecureEndpoint to a UDP socket and decodes the signaling messages
// that arrive on its sessions. Cloud services and the node daemon both sit on
// one of these; what differs is who may connect and what a message does.
import { KeyPair } from "../protocol/crypto.js";
import { ProtocolError } from "../protocol/errors.js";
import { Signal, decodeSignal, encodeSignal, isSignal } from "../protocol/signaling.js";
import { Logger, RateLimitedLog } from "../util/log.js";
import { PeerPath, Source } from "./path.js";
import { Peer } from "./peer.js";
import { EndpointMux } from "./endpoint-mux.js";
import { EndpointHooks, SecureEndpoint } from "./secure-endpoint.js";

export interface ChannelHooks<Tag> extends Omit<EndpointHooks<Tag>, "onMessage"> {
  onSignal(peer: Peer<Tag>, signal: Signal, source: Source): void;
  /** Plaintexts that are not signaling (IP packets); dropped when absent. */
  onPacket?(peer: Peer<Tag>, packet: Buffer, source: Source): void;
  /** Datagrams for relay paths; the channel has no relay of its own. */
  sendRelay?(datagram: Buffer, path: Extract<PeerPath, { kind: "relay" }>): void;
}

export class SignalChannel<Tag = unknown> {
  readonly engine: SecureEndpoint<Tag>;
  private readonly badSignalLog: RateLimitedLog;
  private ownsMux = false;

  /** With no mux given, the channel gets a socket of its own at listen(). */
  constructor(
    identity: KeyPair,
    private readonly hooks: ChannelHooks<Tag>,
    private readonly log: Logger,
    readonly mux: EndpointMux = new EndpointMux(log),
  ) {
    this.badSignalLog = new RateLimitedLog(log);
    this.engine = new SecureEndpoint<Tag>(
      identity,
      (datagram, path) => this.sendDatagram(datagram, path),
      {
        acceptInitiation: (key, data, source) => hooks.acceptInitiation(key, data, source),
        onMessage: (peer, plaintext, source) => this.dispatch(peer, plaintext, source),
        onSessionEstablished: hooks.onSessionEstablished?.bind(hooks),
        onHandshakeFailed: hooks.onHandshakeFailed?.bind(hooks),
        onProbeFailed: hooks.onProbeFailed?.bind(hooks),
        onPathChanged: hooks.onPathChanged?.bind(hooks),
      },
      log,
      Date.now,
      mux.registry,
      mux.clock,
    );
    mux.attach(this.engine);
    this.engine.start();
  }

  /** Binds the channel's own socket; only for a channel created without a shared mux. */
  async listen(port: number, address?: string): Promise<number> {
    this.ownsMux = true;
    return this.mux.listen(port, address);
  }

  get port(): number {
    return this.mux.port;
  }

  /** Returns the engine's counters merged with the socket's, which count datagrams addressed to no endpoint. */
  countersSnapshot(): Record<string, number> {
    const out = this.engine.counters.snapshot();
    for (const [k, v] of Object.entries(this.mux.counters.snapshot())) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  sendDatagram(datagram: Buffer, path: PeerPath): void {
    if (path.kind === "direct") {
      this.mux.send(datagram, path.endpoint);
    } else if (this.hooks.sendRelay) {
      this.hooks.sendRelay(datagram, path);
    } else {
      this.engine.counters.add("drop.no_relay");
    }
  }

  /** Sends a signaling message; a message that cannot be encoded is counted and logged, not thrown. */
  signal(peer: Peer<Tag>, signal: Signal): void {
    let plaintext: Buffer;
    try {
      plaintext = encodeSignal(signal);
    } catch (err) {
      this.engine.counters.add("drop.encode_failed");
      this.badSignalLog.warn(`encode:${signal.type}`, { err, signal: signal.type }, "failed to encode a signaling message; it was not sent");
      return;
    }
    this.engine.send(peer, plaintext);
  }

  close(): void {
    this.engine.stop();
    this.mux.detach(this.engine);
    if (this.ownsMux) this.mux.close();
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
