// The control plane's side of carried sessions: one carrier per SecureEndpoint
// (per local identity) tells the dataplane worker about the endpoint's peers
// and sessions, and keeps what a restarted worker needs: every session's keys
// and the highest send counter ever granted, so a new worker continues the
// same sessions without a handshake and without reusing a nonce.
import { TransportSession } from "../protocol/session.js";
import { PeerPath, Source } from "../transport/path.js";
import { Peer } from "../transport/peer.js";
import { SecureEndpoint } from "../transport/secure-endpoint.js";
import { SessionCarrier } from "../transport/session-carrier.js";
import { COUNTER_BLOCK, CarriedPeerInfo, PeerUsage, ToWorker } from "./ipc.js";

/** The packets a peer carries, which the worker needs beside the peer's path. */
export interface PeerRole {
  tunnel: { local: number; remote: number } | null;
  relay: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPeer = Peer<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyEngine = SecureEndpoint<any>;

interface SessionRecord {
  carrier: EngineCarrier;
  peer: AnyPeer;
  session: TransportSession;
  /** Counters below this may have been used by some worker; a new worker starts here. */
  granted: bigint;
}

interface PeerRecord {
  id: number;
  /** Byte totals of earlier workers; a new worker counts from zero. */
  sentBase: number;
  receivedBase: number;
  /** The peer state last sent to the worker, to notice paths the control plane changed in place. */
  pushed: string;
}

/** State shared by the carriers of one worker: indexes are unique per socket, peer ids per worker. */
export class CarriedState {
  readonly sessions = new Map<number, SessionRecord>();
  readonly peers = new Map<AnyPeer, PeerRecord>();
  readonly peersById = new Map<number, { carrier: EngineCarrier; peer: AnyPeer }>();
  readonly carriers = new Set<EngineCarrier>();
  readonly carriersByGroup = new Map<number, EngineCarrier>();
  private nextPeerId = 1;
  private nextGroup = 1;

  constructor(
    readonly post: (message: ToWorker) => void,
    readonly roleOf: (engine: AnyEngine, peer: AnyPeer) => PeerRole,
  ) {}

  allocatePeerId(): number {
    return this.nextPeerId++;
  }

  allocateGroup(): number {
    return this.nextGroup++;
  }

  /** Records a grant of COUNTER_BLOCK more counters before the worker may use them. */
  grant(index: number): void {
    const record = this.sessions.get(index);
    if (!record) return;
    record.granted += COUNTER_BLOCK;
    this.post({ t: "grant", index, limit: record.granted });
  }

  /** Sends everything to a new worker: peers first, then their sessions from the granted counters on. */
  replay(): void {
    for (const record of this.peers.values()) record.pushed = "";
    for (const carrier of this.carriers) {
      for (const peer of carrier.engine.allPeers()) {
        const record = this.peers.get(peer);
        if (record) {
          record.sentBase = peer.bytesSent;
          record.receivedBase = peer.bytesReceived;
        }
        carrier.updatePeer(peer);
      }
    }
    for (const record of this.sessions.values()) {
      const peerRecord = this.peers.get(record.peer);
      if (!peerRecord) continue;
      const start = record.granted;
      record.granted += COUNTER_BLOCK;
      this.post({ t: "session", peer: peerRecord.id, state: record.session.exportState(start), limit: record.granted });
    }
  }

  /** Takes over the usage a heartbeat reported. */
  applyUsage(sessions: { index: number; usage: Parameters<TransportSession["applyUsage"]>[0] }[], peers: PeerUsage[]): void {
    for (const { index, usage } of sessions) this.sessions.get(index)?.session.applyUsage(usage);
    for (const usage of peers) {
      const entry = this.peersById.get(usage.id);
      const record = entry && this.peers.get(entry.peer);
      if (!entry || !record) continue;
      entry.peer.awaitingReplySinceMs = usage.awaitingReplySinceMs;
      entry.peer.lastDirectReceivedMs = Math.max(entry.peer.lastDirectReceivedMs, usage.lastDirectReceivedMs);
      entry.peer.bytesSent = record.sentBase + usage.bytesSent;
      entry.peer.bytesReceived = record.receivedBase + usage.bytesReceived;
    }
  }

  carrierOfSession(index: number): EngineCarrier | undefined {
    return this.sessions.get(index)?.carrier;
  }
}

export class EngineCarrier implements SessionCarrier<unknown> {
  readonly group: number;

  constructor(
    readonly engine: AnyEngine,
    private readonly state: CarriedState,
  ) {
    this.group = state.allocateGroup();
    state.carriers.add(this);
    state.carriersByGroup.set(this.group, this);
  }

  /** Forgets the endpoint (it closed): its peers and sessions leave the worker. */
  release(): void {
    for (const peer of this.engine.allPeers()) this.removePeer(peer);
    this.state.carriers.delete(this);
    this.state.carriersByGroup.delete(this.group);
  }

  addSession(peer: AnyPeer, session: TransportSession): void {
    const record = this.ensurePeer(peer);
    // The worker files a session under its peer, so the peer goes first.
    if (!record.pushed) this.updatePeer(peer);
    session.carriedElsewhere = true;
    const start = session.messagesSent;
    const granted = start + COUNTER_BLOCK;
    this.state.sessions.set(session.localIndex, { carrier: this, peer, session, granted });
    this.state.post({ t: "session", peer: record.id, state: session.exportState(start), limit: granted });
  }

  removeSession(index: number): void {
    if (!this.state.sessions.delete(index)) return;
    this.state.post({ t: "unsession", index });
  }

  updatePeer(peer: AnyPeer): void {
    const record = this.ensurePeer(peer);
    const info: CarriedPeerInfo = {
      id: record.id,
      group: this.group,
      keyHex: peer.keyHex,
      path: peer.path ? clonePath(peer.path) : null,
      current: peer.current?.localIndex ?? null,
      ...this.state.roleOf(this.engine, peer),
    };
    record.pushed = pushedKey(peer);
    this.state.post({ t: "peer", info });
  }

  removePeer(peer: AnyPeer): void {
    const record = this.state.peers.get(peer);
    if (!record) return;
    this.state.peers.delete(peer);
    this.state.peersById.delete(record.id);
    for (const [index, s] of this.state.sessions) if (s.peer === peer) this.state.sessions.delete(index);
    this.state.post({ t: "unpeer", id: record.id });
  }

  seal(peer: AnyPeer, session: TransportSession, plaintext: Buffer): void {
    // Some code sets a peer's path in place (a relay fallback, a move), so
    // the worker gets the new path before the first packet that needs it.
    if (this.state.peers.get(peer)?.pushed !== pushedKey(peer)) this.updatePeer(peer);
    this.state.post({ t: "seal", index: session.localIndex, plaintext });
  }

  receive(datagram: Buffer, source: Source): void {
    this.state.post({ t: "receive", datagram, source });
  }

  private ensurePeer(peer: AnyPeer): PeerRecord {
    let record = this.state.peers.get(peer);
    if (!record) {
      record = { id: this.state.allocatePeerId(), sentBase: peer.bytesSent, receivedBase: peer.bytesReceived, pushed: "" };
      this.state.peers.set(peer, record);
      this.state.peersById.set(record.id, { carrier: this, peer });
    }
    return record;
  }
}

function clonePath(path: PeerPath): PeerPath {
  return path.kind === "direct" ? { kind: "direct", endpoint: { ...path.endpoint } } : { ...path };
}

/** Returns a string that changes whenever the peer's path or current session does. */
function pushedKey(peer: AnyPeer): string {
  const session = peer.current?.localIndex ?? 0;
  const path = peer.path;
  if (!path) return `-#${session}`;
  if (path.kind === "direct") return `d${path.endpoint.address}|${path.endpoint.port}#${session}`;
  return `r${path.routeId}|${path.relayKey}#${session}`;
}
