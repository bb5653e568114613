// Messages between the control plane (the daemon, which holds the keys and
// runs handshakes) and the dataplane worker process (which owns the UDP
// socket and reads the TUN device, and encrypts and decrypts transport data).
// They travel over the Node.js IPC channel with "advanced" serialization, so
// Buffers, bigints and typed arrays arrive as they were sent.
import { Endpoint } from "../protocol/endpoint.js";
import { SessionState, SessionUsage } from "../protocol/session.js";
import { PeerPath, Source } from "../transport/path.js";

/**
 * Counters handed to the worker at a time. The worker may send with a counter
 * only below the limit the control plane granted. The control plane records
 * a grant before it sends it. So a new worker that starts at the recorded
 * limit never reuses a nonce, however the old one ended.
 */
export const COUNTER_BLOCK = 1n << 18n;

/** A peer as the worker needs it: where to send, which session is current, which packets it carries. */
export interface CarriedPeerInfo {
  id: number;
  /** Peers of one local identity share a group; a relayed peer's TRS is found in its group. */
  group: number;
  keyHex: string;
  path: PeerPath | null;
  current: number | null;
  /** For a tunnel: the local member's and the peer's virtual IPv4 addresses, as numbers. */
  tunnel: { local: number; remote: number } | null;
  /** True for a relay service, whose RelayData messages the worker unwraps itself. */
  relay: boolean;
}

export type ToWorker =
  | { t: "init"; port: number }
  | { t: "session"; peer: number; state: SessionState; limit: bigint }
  | { t: "unsession"; index: number }
  | { t: "peer"; info: CarriedPeerInfo }
  | { t: "unpeer"; id: number }
  | { t: "grant"; index: number; limit: bigint }
  /** Encrypts plaintext under session index and sends it on the peer's path. */
  | { t: "seal"; index: number; plaintext: Buffer }
  | { t: "send"; datagram: Buffer; to: Endpoint }
  /** A datagram the control plane got that belongs to a carried session. */
  | { t: "receive"; datagram: Buffer; source: Source }
  | { t: "tun"; packet: Buffer }
  | { t: "ping"; seq: number };

export interface PeerUsage {
  id: number;
  awaitingReplySinceMs: number;
  lastDirectReceivedMs: number;
  bytesSent: number;
  bytesReceived: number;
}

export type FromWorker =
  | { t: "ready"; port: number; pid: number }
  | { t: "fatal"; message: string }
  /** A handshake; group is set when it came relayed on that group's TRS session. */
  | { t: "datagram"; datagram: Buffer; source: Source; group?: number }
  /** A packet from the local stack with no sendable session. */
  | { t: "packet"; packet: Buffer }
  /** An authenticated datagram the control plane has to account for: a session's first, or one from a new path. */
  | { t: "authenticated"; index: number; source: Source }
  /** A decrypted plaintext that is not for the TUN device: signaling. */
  | { t: "plaintext"; index: number; plaintext: Buffer; source: Source }
  | { t: "reserve"; index: number }
  | { t: "pong"; seq: number; sessions: { index: number; usage: SessionUsage }[]; peers: PeerUsage[]; counters: Record<string, number> };
