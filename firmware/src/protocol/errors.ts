// Every reason a datagram or message is rejected, as a stable code. Receivers
// count drops by this code, so the set is closed and documented here.
export type DropReason =
  | "short" // shorter than the fixed part of its layout
  | "oversized" // longer than its layout or the protocol allows
  | "bad_type" // unknown message type byte
  | "bad_reserved" // reserved bytes not zero
  | "bad_field" // a field holds a value outside its domain
  | "bad_mac" // mac1 does not match: not addressed to this static key
  | "bad_key" // a low-order X25519 public key
  | "rate_limited" // more handshakes from one source than the limit allows
  | "decrypt_failed" // AEAD tag mismatch: wrong key, corrupted or forged
  | "replay" // counter already seen or left of the window
  | "stale_timestamp" // handshake initiation not newer than the last one accepted
  | "unknown_session" // receiver index names no session
  | "unknown_peer" // static key not authorized for a tunnel
  | "expired_session" // session past its reject-after time or count
  | "spoofed_source" // inner source address is not the peer's virtual IP
  | "no_route"; // no session or peer for the destination

export class ProtocolError extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}
