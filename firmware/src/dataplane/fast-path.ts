// The dataplane worker's tables and per-packet work: packets from the local
// stack are encrypted under their tunnel's current session and sent; transport
// datagrams for carried sessions are authenticated, checked against the replay
// window and written to the local stack. Everything else (handshakes, unknown
// indexes, packets without a session, signaling) goes to the control plane.
// It owns no socket or device: the worker process wires it to both, and tests
// wire it to memory.
import { INITIATION_MIN_BYTES, MessageType, RESPONSE_MIN_BYTES, TRANSPORT_HEADER_BYTES } from "../protocol/constants.js";
import { TAG_BYTES } from "../protocol/crypto.js";
import { Endpoint } from "../protocol/endpoint.js";
import { ProtocolError } from "../protocol/errors.js";
import { decodeTransport } from "../protocol/messages.js";
import { SessionState, SessionUsage, TransportSession } from "../protocol/session.js";
import { SignalType, decodeSignal, encodeSignal } from "../protocol/signaling.js";
import { PeerPath, Source, movesPath } from "../transport/path.js";
import { Counters } from "../util/counters.js";
import { COUNTER_BLOCK, CarriedPeerInfo, FromWorker, PeerUsage, ToWorker } from "./ipc.js";
import { tunnelPacketDrop } from "./tunnel-filter.js";

export interface FastPathIO {
  sendUdp(datagram: Buffer, to: Endpoint): void;
  writeTun(packet: Buffer): void;
  toControl(message: FromWorker): void;
  /** Called for each datagram dropped here, after it was counted; the worker logs a rate-limited line. */
  dropped?(reason: string, source: Source): void;
}

/** Moves and messages on a session other than the current one are reported at most this often per peer. */
const AUTH_REPORT_INTERVAL_MS = 200;

interface CarriedPeer {
  info: CarriedPeerInfo;
  current: CarriedSession | null;
  awaitingReplySinceMs: number;
  lastDirectReceivedMs: number;
  bytesSent: number;
  bytesReceived: number;
  lastAuthReportMs: number;
  changed: boolean;
}

interface CarriedSession {
  session: TransportSession;
  peer: CarriedPeer;
  /** Counters at and above this are not granted yet. */
  limit: bigint;
  reserving: boolean;
  /** Set once the control plane has a report that this session received a datagram. */
  receiptReported: boolean;
  changed: boolean;
}

export class FastPath {
  private readonly sessions = new Map<number, CarriedSession>();
  private readonly peers = new Map<number, CarriedPeer>();
  /** Peers by group and static key, to find a relayed tunnel's TRS. */
  private readonly byKey = new Map<string, CarriedPeer>();
  /** Tunnels by local virtual IP, then peer virtual IP. */
  private readonly routes = new Map<number, Map<number, CarriedPeer>>();

  constructor(
    private readonly io: FastPathIO,
    readonly counters = new Counters(),
    private readonly now: () => number = Date.now,
  ) {}

  /** Applies one message from the control plane. */
  control(m: ToWorker): void {
    switch (m.t) {
      case "session":
        return this.addSession(m.peer, m.state, m.limit);
      case "unsession":
        return this.removeSession(m.index);
      case "peer":
        return this.updatePeer(m.info);
      case "unpeer":
        return this.removePeer(m.id);
      case "grant": {
        const carried = this.sessions.get(m.index);
        if (carried && m.limit > carried.limit) carried.limit = m.limit;
        if (carried) carried.reserving = false;
        return;
      }
      case "seal": {
        const carried = this.sessions.get(m.index);
        if (!carried) return this.counters.add("dataplane.drop.unknown_session");
        this.transmit(carried.peer, carried, m.plaintext);
        return;
      }
      case "send":
        this.io.sendUdp(m.datagram, m.to);
        return;
      case "receive":
        return this.receiveDatagram(m.datagram, m.source);
      case "tun":
        this.io.writeTun(m.packet);
        return;
      default:
        return;
    }
  }

  private addSession(peerId: number, state: SessionState, limit: bigint): void {
    const peer = this.peers.get(peerId);
    if (!peer) return this.counters.add("dataplane.drop.session_without_peer");
    const carried: CarriedSession = { session: TransportSession.fromState(state), peer, limit, reserving: false, receiptReported: false, changed: false };
    this.sessions.set(state.localIndex, carried);
    if (peer.info.current === state.localIndex) peer.current = carried;
  }

  private removeSession(index: number): void {
    const carried = this.sessions.get(index);
    if (!carried) return;
    this.sessions.delete(index);
    if (carried.peer.current === carried) carried.peer.current = null;
  }

  private updatePeer(info: CarriedPeerInfo): void {
    let peer = this.peers.get(info.id);
    if (peer) {
      this.unroute(peer);
      this.byKey.delete(`${peer.info.group}:${peer.info.keyHex}`);
      peer.info = info;
    } else {
      peer = { info, current: null, awaitingReplySinceMs: 0, lastDirectReceivedMs: 0, bytesSent: 0, bytesReceived: 0, lastAuthReportMs: 0, changed: false };
      this.peers.set(info.id, peer);
    }
    peer.current = info.current === null ? null : (this.sessions.get(info.current) ?? null);
    this.byKey.set(`${info.group}:${info.keyHex}`, peer);
    if (info.tunnel) {
      let byRemote = this.routes.get(info.tunnel.local);
      if (!byRemote) this.routes.set(info.tunnel.local, (byRemote = new Map()));
      byRemote.set(info.tunnel.remote, peer);
    }
  }

  private removePeer(id: number): void {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.unroute(peer);
    this.peers.delete(id);
    if (this.byKey.get(`${peer.info.group}:${peer.info.keyHex}`) === peer) this.byKey.delete(`${peer.info.group}:${peer.info.keyHex}`);
    for (const [index, carried] of this.sessions) if (carried.peer === peer) this.sessions.delete(index);
  }

  private unroute(peer: CarriedPeer): void {
    const tunnel = peer.info.tunnel;
    if (!tunnel) return;
    const byRemote = this.routes.get(tunnel.local);
    if (byRemote?.get(tunnel.remote) !== peer) return;
    byRemote.delete(tunnel.remote);
    if (byRemote.size === 0) this.routes.delete(tunnel.local);
  }

  /** Sends a packet from the local stack: the source address picks the local member, the destination the tunnel. */
  receivePacket(packet: Buffer): void {
    if (packet.length < 20 || packet[0]! >> 4 !== 4) {
      this.counters.add("tun.drop.not_ipv4");
      return;
    }
    const peer = this.routes.get(packet.readUInt32BE(12))?.get(packet.readUInt32BE(16));
    const carried = peer?.current;
    if (!peer || !carried || !carried.session.confirmed || !peer.info.path || carried.session.isExpired(this.now())) {
      // No usable session: the control plane queues it, requests a route or starts a handshake.
      this.io.toControl({ t: "packet", packet });
      return;
    }
    this.transmit(peer, carried, packet);
  }

  private transmit(peer: CarriedPeer, carried: CarriedSession, plaintext: Buffer): void {
    const session = carried.session;
    if (session.messagesSent >= carried.limit) {
      // The grant is late; sending would use a counter the control plane has not recorded.
      this.counters.add("dataplane.drop.counter_not_granted");
      this.reserve(carried);
      return;
    }
    const path = peer.info.path;
    if (!path) return this.counters.add("drop.no_path");
    const now = this.now();
    let datagram: Buffer;
    try {
      datagram = session.encrypt(plaintext, now);
    } catch (err) {
      this.counters.add(err instanceof ProtocolError ? `drop.${err.reason}` : "dataplane.drop.encrypt_failed");
      return;
    }
    if (plaintext.length > 0 && peer.awaitingReplySinceMs === 0) peer.awaitingReplySinceMs = now;
    peer.bytesSent += datagram.length;
    peer.changed = true;
    carried.changed = true;
    if (session.messagesSent >= carried.limit - COUNTER_BLOCK / 2n) this.reserve(carried);
    this.sendOnPath(peer, path, datagram);
  }

  private reserve(carried: CarriedSession): void {
    if (carried.reserving) return;
    carried.reserving = true;
    this.io.toControl({ t: "reserve", index: carried.session.localIndex });
  }

  private sendOnPath(peer: CarriedPeer, path: PeerPath, datagram: Buffer): void {
    if (path.kind === "direct") {
      this.io.sendUdp(datagram, path.endpoint);
      return;
    }
    // Relayed: the tunnel datagram travels inside a RelayData message on the session with the TRS.
    const relay = this.byKey.get(`${peer.info.group}:${path.relayKey}`);
    const carried = relay?.current;
    if (!relay || !carried?.session.confirmed || relay.info.path?.kind !== "direct") {
      this.counters.add("drop.no_relay");
      return;
    }
    this.transmit(relay, carried, encodeSignal({ type: SignalType.RelayData, routeId: path.routeId, datagram }));
  }

  /**
   * Handles a datagram from the UDP socket, or one unwrapped from a relay
   * message on the TRS session of group. A relayed datagram may reach only
   * that group's sessions, because in the control plane the member that owns
   * the TRS session handles what it relays.
   */
  receiveDatagram(datagram: Buffer, source: Source, group?: number): void {
    const type = datagram.length >= 4 ? datagram[0] : -1;
    if (type === MessageType.HandshakeInitiation || type === MessageType.HandshakeResponse) {
      const minBytes = type === MessageType.HandshakeInitiation ? INITIATION_MIN_BYTES : RESPONSE_MIN_BYTES;
      if (datagram.length < minBytes) return this.drop("short", source);
      this.io.toControl({ t: "datagram", datagram, source, group });
      return;
    }
    // Whatever is neither a handshake nor for a carried session is counted
    // here, under the control plane's drop reasons, so junk costs no IPC.
    if (type !== MessageType.Transport) return this.drop(type === -1 ? "short" : "bad_type", source);
    if (datagram.length < TRANSPORT_HEADER_BYTES + TAG_BYTES) return this.drop("short", source);
    const carried = this.sessions.get(datagram.readUInt32BE(4));
    if (!carried || (group !== undefined && carried.peer.info.group !== group)) return this.drop("unknown_session", source);
    const now = this.now();
    let plaintext: Buffer;
    try {
      plaintext = carried.session.decrypt(decodeTransport(datagram), now);
    } catch (err) {
      return this.drop(err instanceof ProtocolError ? err.reason : "decrypt_failed", source);
    }
    const peer = carried.peer;
    this.counters.add("transport.received");
    peer.bytesReceived += datagram.length;
    peer.awaitingReplySinceMs = 0;
    peer.changed = true;
    carried.changed = true;
    this.reportReceipt(peer, carried, source, now);
    if (source.kind === "direct") peer.lastDirectReceivedMs = now;
    this.deliver(peer, carried, plaintext, source);
  }

  /**
   * Reports to the control plane what it must act on. That is a session's
   * first message, which confirms a responder session; a message on a session
   * other than the peer's current one; and a move to another path (roaming,
   * or the relay after a lost direct path). The peer moves at once, by the
   * control plane's rule, because the reply to this very packet may leave
   * before the report arrives. The control plane's update then confirms it.
   */
  private reportReceipt(peer: CarriedPeer, carried: CarriedSession, source: Source, now: number): void {
    const first = !carried.receiptReported;
    const due = now - peer.lastAuthReportMs >= AUTH_REPORT_INTERVAL_MS;
    // A move waits while a report is not due, so a peer's datagrams from
    // alternating ports cost one report per interval, not one per datagram.
    const moves = (first || due) && movesPath(peer.info.path, source, peer.lastDirectReceivedMs, now);
    const notCurrent = peer.current !== carried && due;
    if (moves) peer.info.path = source;
    if (!first && !moves && !notCurrent) return;
    carried.receiptReported = true;
    peer.lastAuthReportMs = now;
    this.io.toControl({ t: "authenticated", index: carried.session.localIndex, source });
  }

  private deliver(peer: CarriedPeer, carried: CarriedSession, plaintext: Buffer, source: Source): void {
    if (plaintext.length === 0) {
      this.counters.add("transport.keepalives_received");
      return;
    }
    const tunnel = peer.info.tunnel;
    if (tunnel && plaintext[0]! >> 4 === 4) {
      const drop = tunnelPacketDrop(plaintext, tunnel.remote, tunnel.local);
      if (drop) return this.counters.add(`drop.${drop}`);
      this.io.writeTun(plaintext);
      return;
    }
    if (peer.info.relay && plaintext[0] === SignalType.RelayData) {
      let inner: Buffer;
      let routeId: number;
      try {
        const signal = decodeSignal(plaintext);
        if (signal.type !== SignalType.RelayData) throw new ProtocolError("bad_type", "not relay data");
        inner = signal.datagram;
        routeId = signal.routeId;
      } catch (err) {
        this.counters.add(`drop.signal_${err instanceof ProtocolError ? err.reason : "bad_field"}`);
        return;
      }
      this.receiveDatagram(inner, { kind: "relay", routeId, relayKey: peer.info.keyHex }, peer.info.group);
      return;
    }
    this.io.toControl({ t: "plaintext", index: carried.session.localIndex, plaintext, source });
  }

  private drop(reason: string, source: Source): void {
    this.counters.add(`drop.${reason}`);
    this.io.dropped?.(reason, source);
  }

  /** Returns the heartbeat reply: what changed since the last one, for the control plane's timers and status. */
  pong(seq: number): Extract<FromWorker, { t: "pong" }> {
    const sessions: { index: number; usage: SessionUsage }[] = [];
    for (const [index, carried] of this.sessions) {
      if (!carried.changed) continue;
      carried.changed = false;
      sessions.push({ index, usage: carried.session.usage() });
    }
    const peers: PeerUsage[] = [];
    for (const peer of this.peers.values()) {
      if (!peer.changed) continue;
      peer.changed = false;
      peers.push({
        id: peer.info.id,
        awaitingReplySinceMs: peer.awaitingReplySinceMs,
        lastDirectReceivedMs: peer.lastDirectReceivedMs,
        bytesSent: peer.bytesSent,
        bytesReceived: peer.bytesReceived,
      });
    }
    return { t: "pong", seq, sessions, peers, counters: this.counters.snapshot() };
  }
}
