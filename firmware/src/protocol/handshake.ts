// The handshake as datagrams: the Noise IK state machine of noise.ts framed
// by messages.ts, producing TransportSessions.
//
// Initiator                                 Responder
//   createInitiation ---- initiation ---->  consumeInitiation (learns static key,
//                                             checks timestamp, authorizes)
//   consumeResponse  <---- response ------  respond -> session (may not send data
//   -> session                                until it receives the first transport
//                                             message: key confirmation)
import { KeyPair } from "./crypto.js";
import { PROLOGUE } from "./constants.js";
import {
  decodeInitiation,
  decodeResponse,
  encodeInitiation,
  encodeResponse,
  joinInitiationPayload,
  splitInitiationPayload,
} from "./messages.js";
import { IKInitiator, IKResponder } from "./noise.js";
import { TransportSession } from "./session.js";

export interface PendingInitiation {
  localIndex: number;
  remoteStatic: Buffer;
  datagram: Buffer;
  state: IKInitiator;
}

export function createInitiation(
  localStatic: KeyPair,
  remoteStatic: Buffer,
  localIndex: number,
  timestampMs: bigint,
  data: Buffer,
): PendingInitiation {
  const state = new IKInitiator(localStatic, remoteStatic, PROLOGUE);
  const noiseMessage = state.writeMessage1(joinInitiationPayload(timestampMs, data));
  const datagram = encodeInitiation({ senderIndex: localIndex, noiseMessage }, remoteStatic);
  return { localIndex, remoteStatic, datagram, state };
}

export interface ReceivedInitiation {
  remoteIndex: number;
  remoteStatic: Buffer;
  timestampMs: bigint;
  data: Buffer;
  state: IKResponder;
}

/** Throws ProtocolError (bad_mac, decrypt_failed, short, ...) on anything invalid. */
export function consumeInitiation(localStatic: KeyPair, ownMac1Key: Buffer, datagram: Buffer): ReceivedInitiation {
  const frame = decodeInitiation(datagram, ownMac1Key);
  const state = new IKResponder(localStatic, PROLOGUE);
  const { payload, remoteStatic } = state.readMessage1(frame.noiseMessage);
  const { timestampMs, data } = splitInitiationPayload(payload);
  return { remoteIndex: frame.senderIndex, remoteStatic, timestampMs, data, state };
}

export function respond(
  received: ReceivedInitiation,
  localIndex: number,
  data: Buffer,
  nowMs: number,
): { datagram: Buffer; session: TransportSession } {
  const { message, keys } = received.state.writeMessage2(data);
  const datagram = encodeResponse(
    { senderIndex: localIndex, receiverIndex: received.remoteIndex, noiseMessage: message },
    received.remoteStatic,
  );
  return { datagram, session: new TransportSession(localIndex, received.remoteIndex, keys, false, nowMs) };
}

/** Returns the receiver index first, so the caller can find the pending initiation. */
export function peekResponseReceiver(datagram: Buffer, ownMac1Key: Buffer): { receiverIndex: number; senderIndex: number; noiseMessage: Buffer } {
  return decodeResponse(datagram, ownMac1Key);
}

export function consumeResponse(
  pending: PendingInitiation,
  frame: { senderIndex: number; noiseMessage: Buffer },
  nowMs: number,
): { data: Buffer; session: TransportSession } {
  const { payload, keys } = pending.state.readMessage2(frame.noiseMessage);
  return { data: payload, session: new TransportSession(pending.localIndex, frame.senderIndex, keys, true, nowMs) };
}
