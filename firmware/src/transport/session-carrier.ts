// The interface through which a SecureEndpoint hands its sessions to another
// process (the dataplane worker) that encrypts and decrypts for it. The
// endpoint keeps the keys, runs the handshakes and the timers; the carrier
// does the per-packet work. Without a carrier the endpoint does it itself.
import { TransportSession } from "../protocol/session.js";
import { Source } from "./path.js";
import { Peer } from "./peer.js";

export interface SessionCarrier<Tag> {
  /** A session was established; from now on only the carrier encrypts and decrypts with it. */
  addSession(peer: Peer<Tag>, session: TransportSession): void;
  /** The session's index was released. */
  removeSession(index: number): void;
  /** The peer's path or current session changed. */
  updatePeer(peer: Peer<Tag>): void;
  removePeer(peer: Peer<Tag>): void;
  /** Encrypts plaintext under session and sends it on the peer's path. */
  seal(peer: Peer<Tag>, session: TransportSession, plaintext: Buffer): void;
  /** The endpoint closed: its peers and sessions leave the carrier. */
  release(): void;
  /** A transport datagram for a carried session that reached the endpoint instead of the carrier. */
  receive(datagram: Buffer, source: Source): void;
}
