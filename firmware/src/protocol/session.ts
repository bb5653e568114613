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
import { ReplayWindow, ReplayWindowState } from "./replay.js";

/**
 * Everything another process needs to carry a session on: the keys, the
 * indexes, the next send counter and the replay window. It holds secret keys,
 * so it never goes to a log or a file.
 */
export interface SessionState {
  localIndex: number;
  remoteIndex: number;
  sendKey: Buffer;
  receiveKey: Buffer;
  remoteStatic: Buffer;
  isInitiator: boolean;
  createdMs: number;
  confirmed: boolean;
  /** The lowest counter the new holder may send with; every counter below may have been used. */
  sendCounter: bigint;
  window: ReplayWindowState;
}

/** The usage report of the process that carries a session. */
export interface SessionUsage {
  sendCounter: bigint;
  lastSentMs: number;
  lastReceivedMs: number;
  bytesSent: number;
  bytesReceived: number;
  confirmed: boolean;
  window: ReplayWindowState;
}

export class TransportSession {
  private sendCounter = 0n;
  private window = new ReplayWindow();
  /**
   * Set while another process (the dataplane worker) encrypts and decrypts
   * with this session's keys. Encrypting here as well would reuse counters,
   * that is nonces, so encrypt() and decrypt() refuse while it is set.
   */
  carriedElsewhere = false;
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

  /** Rebuilds a session from the state another process exported. */
  static fromState(state: SessionState): TransportSession {
    const keys: TransportKeys = { sendKey: state.sendKey, receiveKey: state.receiveKey, remoteStatic: state.remoteStatic, handshakeHash: Buffer.alloc(0) };
    const session = new TransportSession(state.localIndex, state.remoteIndex, keys, state.isInitiator, state.createdMs);
    session.sendCounter = state.sendCounter;
    session.window = ReplayWindow.restore(state.window);
    session.confirmed = state.confirmed;
    return session;
  }

  /** Exports the session for another process, which starts sending at sendCounter. */
  exportState(sendCounter: bigint): SessionState {
    return {
      localIndex: this.localIndex,
      remoteIndex: this.remoteIndex,
      sendKey: this.keys.sendKey,
      receiveKey: this.keys.receiveKey,
      remoteStatic: this.keys.remoteStatic,
      isInitiator: this.isInitiator,
      createdMs: this.createdMs,
      confirmed: this.confirmed,
      sendCounter,
      window: this.window.snapshot(),
    };
  }

  /** Returns the usage report, for the timers of the process that has the keys but does not carry the data. */
  usage(): SessionUsage {
    return {
      sendCounter: this.sendCounter,
      lastSentMs: this.lastSentMs,
      lastReceivedMs: this.lastReceivedMs,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      confirmed: this.confirmed,
      window: this.window.snapshot(),
    };
  }

  /** Takes over what the carrying process reported; counters and times only move forward. */
  applyUsage(u: SessionUsage): void {
    if (u.sendCounter > this.sendCounter) this.sendCounter = u.sendCounter;
    this.lastSentMs = Math.max(this.lastSentMs, u.lastSentMs);
    this.lastReceivedMs = Math.max(this.lastReceivedMs, u.lastReceivedMs);
    this.bytesSent = Math.max(this.bytesSent, u.bytesSent);
    this.bytesReceived = Math.max(this.bytesReceived, u.bytesReceived);
    this.confirmed ||= u.confirmed;
    if (u.window.highest >= this.window.highestAccepted) this.window = ReplayWindow.restore(u.window);
  }

  /** Encrypts plaintext into a complete transport datagram. */
  encrypt(plaintext: Buffer, nowMs: number): Buffer {
    if (this.carriedElsewhere) throw new Error(`session ${this.localIndex.toString(16)} is carried by the dataplane; encrypting here would reuse nonces`);
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
    if (this.carriedElsewhere) throw new Error(`session ${this.localIndex.toString(16)} is carried by the dataplane`);
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
