// Datagram layouts. Every UDP payload on the tunnel port starts with a type
// byte and three reserved zero bytes; integers are big-endian.
//
// Handshake initiation (0x01), 128 bytes + data:
//   0   type | reserved[3]
//   4   sender index                 u32, the initiator's local session index
//   8   ephemeral public key         32
//   40  encrypted static public key  32 + 16 tag
//   88  encrypted payload            timestamp u64 (ms) | data (0..512) | 16 tag
//   -16 mac1                         16, keyed BLAKE2b, key = HASH("mac1----" | responder static)
//
// Handshake response (0x02), 76 bytes + data:
//   0   type | reserved[3]
//   4   sender index                 u32, the responder's local session index
//   8   receiver index               u32, the initiator's sender index
//   12  ephemeral public key         32
//   44  encrypted payload            data (0..512) | 16 tag
//   -16 mac1                         16, key = HASH("mac1----" | initiator static)
//
// Transport (0x04), 32 bytes + payload:
//   0   type | reserved[3]
//   4   receiver index               u32
//   8   counter                      u64, the AEAD nonce; never reused under one key
//   16  encrypted payload            payload | 16 tag, header bytes 0..15 as associated data
//
// mac1 lets a receiver drop datagrams not addressed to its static key before
// any X25519 operation.
import { MAC_BYTES, TAG_BYTES, constantTimeEqual, hash, mac } from "./crypto.js";
import {
  HEADER_BYTES,
  INITIATION_MIN_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_HANDSHAKE_DATA_BYTES,
  MessageType,
  RESPONSE_MIN_BYTES,
  TIMESTAMP_BYTES,
  TRANSPORT_HEADER_BYTES,
} from "./constants.js";
import { ProtocolError } from "./errors.js";

const MAC1_LABEL = Buffer.from("mac1----", "ascii");

export function mac1Key(staticPublicKey: Buffer): Buffer {
  return hash(MAC1_LABEL, staticPublicKey).subarray(0, 32);
}

export interface InitiationFrame {
  senderIndex: number;
  /** "e, es, s, ss" plus encrypted payload, as the Noise initiator wrote it. */
  noiseMessage: Buffer;
}

export interface ResponseFrame {
  senderIndex: number;
  receiverIndex: number;
  noiseMessage: Buffer;
}

export interface TransportFrame {
  receiverIndex: number;
  counter: bigint;
  /** Bytes 0..15, the associated data of the AEAD. */
  header: Buffer;
  ciphertext: Buffer;
}

function writeHeader(buf: Buffer, type: number): void {
  buf.writeUInt8(type, 0);
  buf.fill(0, 1, HEADER_BYTES);
}

/** Checks type, reserved bytes and size limits shared by all layouts. */
function checkHeader(buf: Buffer, type: number, minBytes: number, maxBytes: number, what: string): void {
  if (buf.length < minBytes) throw new ProtocolError("short", `${what} of ${buf.length} bytes, minimum ${minBytes}`);
  if (buf.length > maxBytes) throw new ProtocolError("oversized", `${what} of ${buf.length} bytes, maximum ${maxBytes}`);
  if (buf[0] !== type) throw new ProtocolError("bad_type", `${what}: type 0x${buf[0]!.toString(16)}`);
  if (buf[1] !== 0 || buf[2] !== 0 || buf[3] !== 0) throw new ProtocolError("bad_reserved", `${what}: reserved bytes not zero`);
}

export function encodeInitiation(frame: InitiationFrame, responderStatic: Buffer): Buffer {
  const buf = Buffer.alloc(8 + frame.noiseMessage.length + MAC_BYTES);
  writeHeader(buf, MessageType.HandshakeInitiation);
  buf.writeUInt32BE(frame.senderIndex >>> 0, 4);
  frame.noiseMessage.copy(buf, 8);
  const macOffset = buf.length - MAC_BYTES;
  mac(mac1Key(responderStatic), buf.subarray(0, macOffset)).copy(buf, macOffset);
  return buf;
}

/** Verifies mac1 against our own mac1 key before returning the frame. */
export function decodeInitiation(buf: Buffer, ownMac1Key: Buffer): InitiationFrame {
  const max = INITIATION_MIN_BYTES + MAX_HANDSHAKE_DATA_BYTES;
  checkHeader(buf, MessageType.HandshakeInitiation, INITIATION_MIN_BYTES, max, "handshake initiation");
  verifyMac1(buf, ownMac1Key);
  return { senderIndex: buf.readUInt32BE(4), noiseMessage: buf.subarray(8, buf.length - MAC_BYTES) };
}

export function encodeResponse(frame: ResponseFrame, initiatorStatic: Buffer): Buffer {
  const buf = Buffer.alloc(12 + frame.noiseMessage.length + MAC_BYTES);
  writeHeader(buf, MessageType.HandshakeResponse);
  buf.writeUInt32BE(frame.senderIndex >>> 0, 4);
  buf.writeUInt32BE(frame.receiverIndex >>> 0, 8);
  frame.noiseMessage.copy(buf, 12);
  const macOffset = buf.length - MAC_BYTES;
  mac(mac1Key(initiatorStatic), buf.subarray(0, macOffset)).copy(buf, macOffset);
  return buf;
}

export function decodeResponse(buf: Buffer, ownMac1Key: Buffer): ResponseFrame {
  const max = RESPONSE_MIN_BYTES + MAX_HANDSHAKE_DATA_BYTES;
  checkHeader(buf, MessageType.HandshakeResponse, RESPONSE_MIN_BYTES, max, "handshake response");
  verifyMac1(buf, ownMac1Key);
  return {
    senderIndex: buf.readUInt32BE(4),
    receiverIndex: buf.readUInt32BE(8),
    noiseMessage: buf.subarray(12, buf.length - MAC_BYTES),
  };
}

function verifyMac1(buf: Buffer, key: Buffer): void {
  const macOffset = buf.length - MAC_BYTES;
  const expected = mac(key, buf.subarray(0, macOffset));
  if (!constantTimeEqual(expected, buf.subarray(macOffset))) {
    throw new ProtocolError("bad_mac", "mac1 does not match this static key");
  }
}

/** Writes the 16-byte transport header into out at offset 0. */
export function writeTransportHeader(out: Buffer, receiverIndex: number, counter: bigint): void {
  writeHeader(out, MessageType.Transport);
  out.writeUInt32BE(receiverIndex >>> 0, 4);
  out.writeBigUInt64BE(counter, 8);
}

export function decodeTransport(buf: Buffer): TransportFrame {
  checkHeader(buf, MessageType.Transport, TRANSPORT_HEADER_BYTES + TAG_BYTES, MAX_DATAGRAM_BYTES, "transport message");
  return {
    receiverIndex: buf.readUInt32BE(4),
    counter: buf.readBigUInt64BE(8),
    header: buf.subarray(0, TRANSPORT_HEADER_BYTES),
    ciphertext: buf.subarray(TRANSPORT_HEADER_BYTES),
  };
}

/** Returns the message type of a datagram, or null when it is empty or unknown. */
export function messageTypeOf(buf: Buffer): number | null {
  if (buf.length < HEADER_BYTES) return null;
  const t = buf[0]!;
  return t === MessageType.HandshakeInitiation || t === MessageType.HandshakeResponse || t === MessageType.Transport ? t : null;
}

/** Splits the decrypted initiation payload into its timestamp and data. */
export function splitInitiationPayload(payload: Buffer): { timestampMs: bigint; data: Buffer } {
  if (payload.length < TIMESTAMP_BYTES) throw new ProtocolError("short", "initiation payload without timestamp");
  return { timestampMs: payload.readBigUInt64BE(0), data: payload.subarray(TIMESTAMP_BYTES) };
}

export function joinInitiationPayload(timestampMs: bigint, data: Buffer): Buffer {
  if (data.length > MAX_HANDSHAKE_DATA_BYTES) throw new RangeError(`handshake data of ${data.length} bytes exceeds ${MAX_HANDSHAKE_DATA_BYTES}`);
  const out = Buffer.alloc(TIMESTAMP_BYTES + data.length);
  out.writeBigUInt64BE(timestampMs, 0);
  data.copy(out, TIMESTAMP_BYTES);
  return out;
}
