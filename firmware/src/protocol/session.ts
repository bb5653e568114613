// A transport session: the pair of keys one completed handshake produced,
// with the send counter and the receive replay window. Sessions are never
// renewed in place: a rekey makes a new session under a new local index.
import { TAG_BYTES, open, seal } from "./crypto.js";
import {
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME_MS,
  TRANSPORT_HEADER_BYTES,
} from "./constants.js";
import { ProtocolError } from "./errors.js";
import { TransportFrame, writeTransportHeader } from "./messages.js";
import { TransportKeys } from "./noise.js";
import { ReplayWindow } from "./replay.js";

export class TransportSession {
  private sendCounter = 0n;
  private readonly window = new ReplayWindow();
  lastSentMs: number;
  lastReceivedMs = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /**
   * Whether the other end has proved it has the keys. The initiator knows
   * it from the response; a responder learns it from the first transport
   * message, and sends nothing before (a replayed initiation gets no data).
   */
  confirmed: boolean;

  constructor(
    readonly localIndex: number,
    readonly remoteIndex: number,
    private readonly keys: TransportKeys,
    /** The initiator is the end that rekeys by time, so both ends never race. */
    readonly isInitiator: boolean,
    readonly createdMs: number,
  ) {
    this.lastSentMs = createdMs;
    this.confirmed = isInitiator;
  }

  get remoteStatic(): Buffer {
    return this.keys.remoteStatic;
  }

  /** Encrypts plaintext into a complete transport datagram. */
  encrypt(plaintext: Buffer, nowMs: number): Buffer {
    if (this.sendCounter >= REJECT_AFTER_MESSAGES) throw new ProtocolError("expired_session", "send counter exhausted");
    const out = Buffer.allocUnsafe(TRANSPORT_HEADER_BYTES + plaintext.length + TAG_BYTES);
    const counter = this.sendCounter++;
    writeTransportHeader(out, this.remoteIndex, counter);
    seal(out.subarray(TRANSPORT_HEADER_BYTES), this.keys.sendKey, counter, out.subarray(0, TRANSPORT_HEADER_BYTES), plaintext);
    this.lastSentMs = nowMs;
    this.bytesSent += out.length;
    return out;
  }

  /**
   * Authenticates and decrypts a transport frame addressed to this session.
   * The replay window is checked before and updated only after the tag
   * verified, so forged counters cannot move it.
   */
  decrypt(frame: TransportFrame, nowMs: number): Buffer {
    if (this.isExpired(nowMs)) throw new ProtocolError("expired_session", "session past its reject-after time");
    if (!this.window.check(frame.counter)) throw new ProtocolError("replay", `counter ${frame.counter} already seen or too old`);
    const plaintext = Buffer.allocUnsafe(frame.ciphertext.length - TAG_BYTES);
    if (!open(plaintext, this.keys.receiveKey, frame.counter, frame.header, frame.ciphertext)) {
      throw new ProtocolError("decrypt_failed", "transport message failed authentication");
    }
    this.window.accept(frame.counter);
    this.confirmed = true;
    this.lastReceivedMs = nowMs;
    this.bytesReceived += frame.ciphertext.length + TRANSPORT_HEADER_BYTES;
    return plaintext;
  }

  /** Tells whether to start a new handshake: the initiator does so at REKEY_AFTER_TIME, either end at REKEY_AFTER_MESSAGES. */
  needsRekey(nowMs: number): boolean {
    if (this.sendCounter >= REKEY_AFTER_MESSAGES) return true;
    return this.isInitiator && nowMs - this.createdMs >= REKEY_AFTER_TIME_MS;
  }

  isExpired(nowMs: number): boolean {
    return nowMs - this.createdMs >= REJECT_AFTER_TIME_MS;
  }

  get messagesSent(): bigint {
    return this.sendCounter;
  }
}
