// Protocol constants: sizes derive from the crypto constants, timers follow
// the choices WireGuard made for the same Noise-based design.
import { DH_BYTES, MAC_BYTES, TAG_BYTES } from "./crypto.js";
import { INITIATION_KEYS_BYTES } from "./noise.js";

/** Message type byte, the first byte of every datagram. */
export const MessageType = {
  HandshakeInitiation: 0x01,
  HandshakeResponse: 0x02,
  Transport: 0x04,
} as const;

/** Bound into every handshake hash, so a message from another protocol or version never verifies. */
export const PROLOGUE = Buffer.from("cyphonic/1", "ascii");

export const HEADER_BYTES = 4; // type (1) + reserved (3)
export const INDEX_BYTES = 4;
export const TIMESTAMP_BYTES = 8;

export const TRANSPORT_HEADER_BYTES = HEADER_BYTES + INDEX_BYTES + 8; // type, receiver index, counter
export const TRANSPORT_OVERHEAD_BYTES = TRANSPORT_HEADER_BYTES + TAG_BYTES;

/** Handshake payloads carry a timestamp and application data of at most this size. */
export const MAX_HANDSHAKE_DATA_BYTES = 512;

export const INITIATION_MIN_BYTES =
  HEADER_BYTES + INDEX_BYTES + INITIATION_KEYS_BYTES + TIMESTAMP_BYTES + TAG_BYTES + MAC_BYTES;
export const RESPONSE_MIN_BYTES = HEADER_BYTES + 2 * INDEX_BYTES + DH_BYTES + TAG_BYTES + MAC_BYTES;

/** Largest UDP payload accepted; larger datagrams are dropped before any work. */
export const MAX_DATAGRAM_BYTES = 65_507;

/**
 * Tunnel MTU: a 1500-byte underlay path minus IPv6 (40) and UDP (8) headers
 * and the transport overhead (32), so the same value works over IPv4 and IPv6.
 */
export const TUNNEL_MTU_BYTES = 1500 - 40 - 8 - TRANSPORT_OVERHEAD_BYTES;

// Session timers, in milliseconds, and limits, in messages.
export const REKEY_AFTER_TIME_MS = 120_000;
export const REJECT_AFTER_TIME_MS = 180_000;
export const REKEY_AFTER_MESSAGES = 2n ** 60n;
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;
export const REKEY_TIMEOUT_MS = 1_000; // retransmit an unanswered initiation after this
export const REKEY_ATTEMPT_TIME_MS = 30_000; // give up a handshake attempt after this
export const KEEPALIVE_TIMEOUT_MS = 10_000; // passive keep-alive after receiving without sending
/** Interval of keep-alives that hold a NAPT mapping open; NAPT UDP timeouts are commonly 30 s or more. */
export const NAPT_KEEPALIVE_INTERVAL_MS = 15_000;

/** Bits in the anti-replay window (RFC 6479 style bitmap). */
export const REPLAY_WINDOW_BITS = 2048;
