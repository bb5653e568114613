// The session engine shared by nodes and cloud services: it runs handshakes,
// keeps sessions per peer, encrypts outgoing plaintext and authenticates
// incoming datagrams. It owns no socket: the owner feeds received datagrams
// to receive() and gives it a function that sends, so tests can wire two
// engines together in memory.
import { KeyPair, MAC_BYTES, constantTimeEqual, mac } from "../protocol/crypto.js";
import {
  HEADER_BYTES,
  KEEPALIVE_TIMEOUT_MS,
  MAX_DATAGRAM_BYTES,
  MessageType,
  REKEY_ATTEMPT_TIME_MS,
  REKEY_TIMEOUT_MS,
} from "../protocol/constants.js";
import { DropReason, ProtocolError } from "../protocol/errors.js";
import { consumeInitiation, consumeResponse, createInitiation, peekResponseReceiver, respond } from "../protocol/handshake.js";
import { decodeTransport, mac1Key, messageTypeOf } from "../protocol/messages.js";
import { TransportSession } from "../protocol/session.js";
import { Counters } from "../util/counters.js";
import { KeyedRateLimiter } from "../util/rate-limit.js";
import { Logger, RateLimitedLog } from "../util/log.js";
import { HandshakeClock } from "./handshake-clock.js";
import { IndexRegistry } from "./index-registry.js";
import { PeerPath, Source, describePath, movesPath, samePath } from "./path.js";
import { HandshakeAttempt, Peer } from "./peer.js";
import { SessionCarrier } from "./session-carrier.js";

export type SendDatagram = (datagram: Buffer, path: PeerPath) => void;

export interface EndpointHooks<Tag> {
  /**
   * Decides whether to answer an initiation from remoteStatic. Returns the
   * peer to bind the session to (existing or new), or a drop reason.
   */
  acceptInitiation(remoteStatic: Buffer, data: Buffer, source: Source): { peer: Peer<Tag>; responseData?: Buffer } | { reject: DropReason };
  /** Receives every authenticated non-empty plaintext. */
  onMessage(peer: Peer<Tag>, plaintext: Buffer, source: Source): void;
  onSessionEstablished?(peer: Peer<Tag>): void;
  onHandshakeFailed?(peer: Peer<Tag>): void;
  /** Called when a probe of another path got no response in time. */
  onProbeFailed?(peer: Peer<Tag>, path: PeerPath): void;
  /** Called when an authenticated datagram arrives from a path other than the peer's current one. */
  onPathChanged?(peer: Peer<Tag>, from: PeerPath | null, to: Source): void;
}

/**
 * Initiations accepted from one source address, per second and in a burst.
 * The burst covers an adapter whose general nodes all reconnect at once from
 * one NAPT address; retransmits (1 s, 2 s, 4 s) absorb the rest.
 */
const HANDSHAKES_PER_SECOND_PER_SOURCE = 32;
const HANDSHAKE_BURST_PER_SOURCE = 64;
/** Data sent without anything heard back for this long means the session is dead (WireGuard: KEEPALIVE + REKEY_TIMEOUT). */
const DEAD_SESSION_MS = KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS * 5;

interface IndexEntry<Tag> {
  peer: Peer<Tag>;
  session: TransportSession | null; // null while the index names a pending initiation
}

export class SecureEndpoint<Tag = unknown> {
  readonly counters = new Counters();
  readonly ownMac1Key: Buffer;
  private readonly peers = new Map<string, Peer<Tag>>();
  private readonly indexes = new Map<number, IndexEntry<Tag>>();
  private readonly dropLog: RateLimitedLog;
  private readonly handshakeLimiter = new KeyedRateLimiter<string>(HANDSHAKES_PER_SECOND_PER_SOURCE, HANDSHAKE_BURST_PER_SOURCE);
  private timer: NodeJS.Timeout | null = null;
  /** Set when another process carries this endpoint's sessions; see SessionCarrier. */
  carrier: SessionCarrier<Tag> | null = null;

  constructor(
    readonly identity: KeyPair,
    private readonly sendDatagram: SendDatagram,
    private readonly hooks: EndpointHooks<Tag>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Shared with the other endpoints on the same socket; a private one when alone. */
    readonly registry: IndexRegistry<SecureEndpoint<Tag>> = new IndexRegistry(),
    private readonly clock: HandshakeClock = new HandshakeClock(),
  ) {
    this.ownMac1Key = mac1Key(identity.publicKey);
    this.dropLog = new RateLimitedLog(log);
  }

  /** Starts the timer that retransmits handshakes, rekeys, sends keep-alives and expires sessions. */
  start(tickMs = 250): void {
    this.timer = setInterval(() => this.tick(), tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  peer(publicKey: Buffer): Peer<Tag> | undefined {
    return this.peers.get(publicKey.toString("hex"));
  }

  allPeers(): IterableIterator<Peer<Tag>> {
    return this.peers.values();
  }

  addPeer(peer: Peer<Tag>): Peer<Tag> {
    const existing = this.peers.get(peer.keyHex);
    if (existing) return existing;
    this.peers.set(peer.keyHex, peer);
    return peer;
  }

  removePeer(peer: Peer<Tag>): void {
    this.peers.delete(peer.keyHex);
    for (const index of [peer.current?.localIndex, peer.previous?.localIndex, peer.handshake?.pending.localIndex]) {
      if (index !== undefined && this.indexes.get(index)?.peer === peer) this.unbindIndex(index);
    }
    peer.current = null;
    peer.previous = null;
    peer.handshake = null;
    this.carrier?.removePeer(peer);
  }

  /** Sends plaintext (an IP packet or a signaling message); queues it and starts a handshake when no session is up. */
  send(peer: Peer<Tag>, plaintext: Buffer): void {
    const now = this.now();
    const session = peer.current;
    if (session && session.confirmed && !session.isExpired(now) && peer.path) {
      this.transmit(peer, session, plaintext, now);
      if (session.needsRekey(now) && !peer.handshake) this.initiate(peer);
      return;
    }
    if (!peer.enqueue(plaintext)) this.counters.add("drop.queue_full");
    // An unconfirmed responder session waits for the initiator's first
    // message, which is on its way. If it does not come, the timer starts a
    // handshake of this end's own.
    if (!peer.handshake && !session?.confirmed) {
      if (!session || session.isExpired(now)) this.initiate(peer);
    } else if (!peer.handshake) {
      this.initiate(peer);
    }
  }

  /** Sends an empty transport message, which keeps NAPT mappings and proves liveness. */
  sendKeepalive(peer: Peer<Tag>): void {
    const now = this.now();
    const session = peer.current;
    if (session?.confirmed && !session.isExpired(now) && peer.path) this.transmit(peer, session, Buffer.alloc(0), now);
  }

  /** Starts (or restarts) a handshake with the peer on its current path, or retransmits a probe. */
  initiate(peer: Peer<Tag>): void {
    const attempt = peer.handshake;
    // A retransmitted probe keeps going to the probed path.
    const probe = attempt?.probe;
    const path = probe?.path ?? peer.path;
    if (!path) {
      this.counters.add("drop.no_path");
      return;
    }
    if (attempt) this.unbindIndex(attempt.pending.localIndex);
    this.sendInitiation(peer, path, attempt?.startedMs ?? this.now(), (attempt?.attempts ?? 0) + 1, probe);
  }

  /**
   * Tries a handshake over another path than the peer's current one (a
   * direct path while relayed, say). When the response comes back over it,
   * the peer moves there with the new session; when it does not within
   * timeoutMs, nothing changes and onProbeFailed is called. A probe never
   * interrupts a handshake in progress.
   */
  probe(peer: Peer<Tag>, path: PeerPath, timeoutMs: number): boolean {
    if (peer.handshake) return false;
    this.sendInitiation(peer, path, this.now(), 1, { path, timeoutMs });
    return true;
  }

  private sendInitiation(peer: Peer<Tag>, path: PeerPath, startedMs: number, attempts: number, probe: HandshakeAttempt["probe"]): void {
    const now = this.now();
    const localIndex = this.allocateIndex();
    const pending = createInitiation(this.identity, peer.publicKey, localIndex, this.nextTimestamp(), peer.initiationData);
    peer.handshake = { pending, startedMs, sentMs: now, attempts, probe };
    this.indexes.set(localIndex, { peer, session: null });
    this.counters.add(probe ? "handshake.probes_sent" : "handshake.initiations_sent");
    this.sendDatagram(pending.datagram, path);
  }

  /** Processes one received datagram; every error is caught, counted and logged here. */
  receive(datagram: Buffer, source: Source): void {
    if (datagram.length > MAX_DATAGRAM_BYTES) return this.drop("oversized", source);
    const type = messageTypeOf(datagram);
    try {
      switch (type) {
        case MessageType.Transport:
          return this.receiveTransport(datagram, source);
        case MessageType.HandshakeInitiation:
          return this.receiveInitiation(datagram, source);
        case MessageType.HandshakeResponse:
          return this.receiveResponse(datagram, source);
        default:
          return this.drop(datagram.length < 4 ? "short" : "bad_type", source);
      }
    } catch (err) {
      if (err instanceof ProtocolError) return this.drop(err.reason, source, err.message);
      // Anything else is a bug in this engine, but one datagram must not stop the process.
      this.counters.add("drop.internal_error");
      this.dropLog.warn("internal_error", { err, source: describePath(source) }, "datagram handling failed");
    }
  }

  private receiveTransport(datagram: Buffer, source: Source): void {
    const frame = decodeTransport(datagram);
    const entry = this.indexes.get(frame.receiverIndex);
    if (!entry?.session) return this.drop("unknown_session", source);
    const { peer, session } = entry;
    if (session.carriedElsewhere) {
      // A relayed datagram can still arrive here while a worker restarts: the carrier decrypts it.
      this.carrier?.receive(datagram, source);
      return;
    }
    const now = this.now();
    const plaintext = session.decrypt(frame, now);
    peer.bytesReceived += datagram.length;
    this.counters.add("transport.received");
    this.afterReceipt(peer, session, source, now);
    if (plaintext.length === 0) {
      this.counters.add("transport.keepalives_received");
      return;
    }
    this.hooks.onMessage(peer, plaintext, source);
  }

  /** Accounts for a datagram the carrier authenticated on session index, as if it had been received here. */
  carriedReceipt(index: number, source: Source): void {
    const entry = this.indexes.get(index);
    if (!entry?.session) return;
    entry.session.confirmed = true;
    this.afterReceipt(entry.peer, entry.session, source, this.now());
  }

  /** Delivers a plaintext the carrier decrypted and did not deliver itself (signaling). */
  carriedPlaintext(index: number, plaintext: Buffer, source: Source): void {
    const entry = this.indexes.get(index);
    if (!entry?.session) return;
    this.hooks.onMessage(entry.peer, plaintext, source);
  }

  /** Updates the peer after an authenticated datagram: liveness, confirmation, its path. */
  private afterReceipt(peer: Peer<Tag>, session: TransportSession, source: Source, now: number): void {
    peer.awaitingReplySinceMs = 0;
    // First message under a new responder session confirms the key: make it current.
    if (peer.current !== session && peer.previous !== session) this.install(peer, session);
    if (movesPath(peer.path, source, peer.lastDirectReceivedMs, now)) this.changePath(peer, source);
    if (source.kind === "direct") peer.lastDirectReceivedMs = now;
    // The first message of a responder session confirms it: what waited goes out now, over the path just seen.
    if (peer.queue.length && peer.current === session) this.flushQueue(peer, session);
  }

  private receiveInitiation(datagram: Buffer, source: Source): void {
    // Checked before any X25519 work: an initiation costs the responder two
    // DH operations, and a flood from one place must not starve the rest.
    if (!this.handshakeLimiter.allow(source.kind === "direct" ? source.endpoint.address : `relay:${source.routeId}`)) {
      return this.drop("rate_limited", source);
    }
    const received = consumeInitiation(this.identity, this.ownMac1Key, datagram);
    const decision = this.hooks.acceptInitiation(received.remoteStatic, received.data, source);
    if ("reject" in decision) return this.drop(decision.reject, source, `initiation from ${shortKey(received.remoteStatic)}`);
    const peer = decision.peer;
    if (received.timestampMs <= peer.lastInitiationTimestampMs) return this.drop("stale_timestamp", source);
    peer.lastInitiationTimestampMs = received.timestampMs;

    const now = this.now();
    const localIndex = this.allocateIndex();
    const { datagram: response, session } = respond(received, localIndex, decision.responseData ?? Buffer.alloc(0), now);
    this.indexes.set(localIndex, { peer, session });
    this.carrier?.addSession(peer, session);
    this.counters.add("handshake.responses_sent");
    // An initiation can be replayed (the timestamp check lives in memory), so
    // it does not move a known peer: the response goes to where the initiation
    // came from, and the peer's path follows only authenticated transport data.
    if (!peer.path) this.changePath(peer, source);
    this.sendDatagram(response, sourcePath(source));
    this.install(peer, session);
  }

  private receiveResponse(datagram: Buffer, source: Source): void {
    const frame = peekResponseReceiver(datagram, this.ownMac1Key);
    const entry = this.indexes.get(frame.receiverIndex);
    const attempt = entry?.peer.handshake;
    if (!entry || entry.session || !attempt || attempt.pending.localIndex !== frame.receiverIndex) {
      return this.drop("unknown_session", source);
    }
    const { peer } = entry;
    const { session } = consumeResponse(attempt.pending, frame, this.now());
    entry.session = session;
    this.carrier?.addSession(peer, session);
    peer.handshake = null;
    this.counters.add("handshake.completed");
    if (!peer.path || !samePath(peer.path, source)) this.changePath(peer, source);
    if (source.kind === "direct") peer.lastDirectReceivedMs = this.now();
    this.install(peer, session);
    // The initiator sends first, which confirms the key to the responder.
    if (peer.queue.length === 0) this.sendKeepalive(peer);
  }

  /** Makes session the peer's current one and sends what waited for it. */
  private install(peer: Peer<Tag>, session: TransportSession): void {
    if (peer.previous && peer.previous !== session) this.unbindIndex(peer.previous.localIndex);
    if (peer.current !== session) peer.previous = peer.current;
    peer.current = session;
    peer.lastHandshakeMs = this.now();
    this.carrier?.updatePeer(peer);
    this.log.debug({ peer: shortKey(peer.publicKey), session: session.localIndex.toString(16) }, "session established");
    this.hooks.onSessionEstablished?.(peer);
    this.flushQueue(peer, session);
  }

  /** Sends what waited for a session, once the session is confirmed. */
  private flushQueue(peer: Peer<Tag>, session: TransportSession): void {
    if (!session.confirmed) return;
    const now = this.now();
    while (peer.queue.length && peer.path) this.transmit(peer, session, peer.queue.shift()!, now);
  }

  private transmit(peer: Peer<Tag>, session: TransportSession, plaintext: Buffer, now: number): void {
    if (plaintext.length > 0 && peer.awaitingReplySinceMs === 0) peer.awaitingReplySinceMs = now;
    if (this.carrier) {
      // The carrier reports the real counters; this keeps the keep-alive timer from firing again meanwhile.
      session.lastSentMs = now;
      this.carrier.seal(peer, session, plaintext);
      return;
    }
    const datagram = session.encrypt(plaintext, now);
    peer.bytesSent += datagram.length;
    this.sendDatagram(datagram, peer.path!);
  }

  private changePath(peer: Peer<Tag>, source: Source): void {
    const from = peer.path;
    peer.path = source.kind === "direct" ? { kind: "direct", endpoint: { ...source.endpoint } } : { ...source };
    if (from) this.counters.add("peer.path_changes");
    this.carrier?.updatePeer(peer);
    this.hooks.onPathChanged?.(peer, from, source);
  }

  /** Retransmits, rekeys, keeps alive and expires; called by the timer. */
  tick(): void {
    const now = this.now();
    for (const peer of this.peers.values()) {
      this.tickHandshake(peer, now);
      this.tickSessions(peer, now);
    }
  }

  private tickHandshake(peer: Peer<Tag>, now: number): void {
    const attempt = peer.handshake;
    if (!attempt) return;
    if (attempt.probe && now - attempt.startedMs >= attempt.probe.timeoutMs) {
      // A failed probe leaves the peer as it was: queue, path and session stay.
      this.unbindIndex(attempt.pending.localIndex);
      peer.handshake = null;
      this.counters.add("handshake.probes_failed");
      this.hooks.onProbeFailed?.(peer, attempt.probe.path);
      return;
    }
    if (now - attempt.startedMs >= REKEY_ATTEMPT_TIME_MS) {
      this.unbindIndex(attempt.pending.localIndex);
      peer.handshake = null;
      this.counters.add("handshake.failed");
      this.counters.add("drop.queue_abandoned", peer.queue.length);
      peer.queue.length = 0;
      this.hooks.onHandshakeFailed?.(peer);
      return;
    }
    // Back off 1, 2, 4 s, capped at 4 s, so a lost peer costs little.
    const backoffMs = REKEY_TIMEOUT_MS * Math.min(4, 2 ** (attempt.attempts - 1));
    if (now - attempt.sentMs >= backoffMs) this.initiate(peer);
  }

  private tickSessions(peer: Peer<Tag>, now: number): void {
    if (peer.previous?.isExpired(now)) {
      this.unbindIndex(peer.previous.localIndex);
      peer.previous = null;
    }
    const session = peer.current;
    if (!session) return;
    // Data waits on a responder session the initiator never confirmed: start a handshake of this end's own.
    if (!session.confirmed && peer.queue.length && !peer.handshake && now - session.createdMs >= REKEY_TIMEOUT_MS) {
      this.initiate(peer);
      return;
    }
    if (session.isExpired(now)) {
      this.unbindIndex(session.localIndex);
      peer.current = null;
      if (peer.initiates && !peer.handshake) this.initiate(peer);
      return;
    }
    if (session.needsRekey(now) && !peer.handshake) {
      this.initiate(peer);
      return;
    }
    // Data went out and nothing came back, not even a passive keep-alive: the
    // other end lost the session (it restarted, say), so start a new one.
    if (peer.awaitingReplySinceMs && now - peer.awaitingReplySinceMs >= DEAD_SESSION_MS && !peer.handshake) {
      peer.awaitingReplySinceMs = 0;
      this.counters.add("handshake.dead_session");
      this.initiate(peer);
      return;
    }
    const idleSend = now - session.lastSentMs;
    if (peer.persistentKeepaliveMs > 0 && idleSend >= peer.persistentKeepaliveMs) {
      this.sendKeepalive(peer);
    } else if (session.lastReceivedMs > session.lastSentMs && idleSend >= KEEPALIVE_TIMEOUT_MS) {
      // Passive keep-alive: the peer sent data and heard nothing back for a while.
      this.sendKeepalive(peer);
    }
  }

  private allocateIndex(): number {
    return this.registry.allocate(this);
  }

  private unbindIndex(index: number): void {
    if (this.indexes.get(index)?.session) this.carrier?.removeSession(index);
    this.indexes.delete(index);
    this.registry.release(index);
  }

  /** True when a handshake initiation carries a mac1 for this endpoint's static key. */
  matchesMac1(datagram: Buffer): boolean {
    if (datagram.length < MAC_BYTES + HEADER_BYTES) return false;
    const macOffset = datagram.length - MAC_BYTES;
    return constantTimeEqual(mac(this.ownMac1Key, datagram.subarray(0, macOffset)), datagram.subarray(macOffset));
  }

  private nextTimestamp(): bigint {
    return this.clock.next();
  }

  private drop(reason: DropReason, source: Source, detail?: string): void {
    this.counters.add(`drop.${reason}`);
    this.dropLog.warn(reason, { reason, source: describePath(source) }, detail ? `dropped datagram: ${detail}` : "dropped datagram");
  }
}

function sourcePath(source: Source): PeerPath {
  return source.kind === "direct" ? { kind: "direct", endpoint: source.endpoint } : source;
}

export function shortKey(key: Buffer): string {
  return key.subarray(0, 6).toString("base64url");
}
