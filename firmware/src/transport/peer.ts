// Per-peer state, keyed by the peer's static public key as in WireGuard's
// cryptokey routing: the current session for sending, the previous one kept
// for receiving while a rekey settles, and at most one handshake in flight.
import { PendingInitiation } from "../protocol/handshake.js";
import { TransportSession } from "../protocol/session.js";
import { PeerPath } from "./path.js";

/** Packets held while a handshake completes; older ones are dropped first. */
export const MAX_QUEUED_PACKETS = 128;

export interface HandshakeAttempt {
  pending: PendingInitiation;
  startedMs: number;
  sentMs: number;
  attempts: number;
  /** Set for a probe of another path: where it goes and how long it may take. */
  probe?: { path: PeerPath; timeoutMs: number };
}

export class Peer<Tag = unknown> {
  current: TransportSession | null = null;
  previous: TransportSession | null = null;
  handshake: HandshakeAttempt | null = null;
  /** Highest initiation timestamp accepted from this key: older or equal ones are replays. */
  lastInitiationTimestampMs = -1n;
  lastHandshakeMs = 0;
  readonly queue: Buffer[] = [];
  /** Data sent in every initiation to this peer (for tunnels: the route id). */
  initiationData: Buffer = Buffer.alloc(0);
  /** True when this end opens handshakes to the peer; false when it only answers them. */
  initiates: boolean;
  /** Send an empty transport message at this interval when idle, 0 for never. */
  persistentKeepaliveMs = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** When an authenticated packet last arrived over a direct path, in ms. */
  lastDirectReceivedMs = 0;
  /** When data was first sent with nothing received since, in ms; 0 when a reply came. */
  awaitingReplySinceMs = 0;

  constructor(
    readonly publicKey: Buffer,
    public path: PeerPath | null,
    public tag: Tag,
    initiates: boolean,
  ) {
    this.initiates = initiates;
  }

  get keyHex(): string {
    return this.publicKey.toString("hex");
  }

  enqueue(packet: Buffer): boolean {
    let dropped = false;
    if (this.queue.length >= MAX_QUEUED_PACKETS) {
      this.queue.shift();
      dropped = true;
    }
    this.queue.push(packet);
    return !dropped;
  }
}
