// The Noise IK handshake (Noise Protocol Framework, revision 34), instantiated
// as Noise_IK_25519_ChaChaPoly_BLAKE2b:
//
//   <- s
//   ...
//   -> e, es, s, ss
//   <- e, ee, se
//
// The initiator knows the responder's static key beforehand (from the cloud),
// so the tunnel is mutually authenticated after one round trip and both ends
// derive fresh transport keys from ephemeral X25519 exchanges: the cloud and
// the relay never see them. This module is pure: it builds and consumes the
// two handshake payload sections; framing lives in messages.ts.
import { DH_BYTES, KeyPair, TAG_BYTES, dh, generateKeyPair, hash, hkdf, open, publicKeyOf, seal } from "./crypto.js";
import { ProtocolError } from "./errors.js";

export const NOISE_PROTOCOL_NAME = "Noise_IK_25519_ChaChaPoly_BLAKE2b";

/** Size of "e, s" in the first message: ephemeral key plus the encrypted static key. */
export const INITIATION_KEYS_BYTES = DH_BYTES + DH_BYTES + TAG_BYTES;
/** Size of "e" in the second message. */
export const RESPONSE_KEYS_BYTES = DH_BYTES;

/** Keys a completed handshake yields, from Split() (section 5.2). */
export interface TransportKeys {
  sendKey: Buffer;
  receiveKey: Buffer;
  /** The handshake hash h, identical on both ends; usable as a channel binding. */
  handshakeHash: Buffer;
  remoteStatic: Buffer;
}

/** SymmetricState of section 5.2 with its CipherState folded in. */
class SymmetricState {
  private ck: Buffer;
  private h: Buffer;
  private k: Buffer | null = null;
  private n = 0n;

  constructor(prologue: Buffer) {
    const name = Buffer.from(NOISE_PROTOCOL_NAME, "ascii");
    // The name (33 bytes) is shorter than HASHLEN (64), so it is zero-padded.
    this.h = Buffer.alloc(64);
    name.copy(this.h);
    this.ck = Buffer.from(this.h);
    this.mixHash(prologue);
  }

  mixHash(data: Buffer): void {
    this.h = hash(this.h, data);
  }

  mixKey(ikm: Buffer): void {
    const [ck, tempK] = hkdf(this.ck, ikm, 2) as [Buffer, Buffer];
    this.ck = ck;
    this.k = tempK.subarray(0, 32);
    this.n = 0n;
  }

  encryptAndHash(plaintext: Buffer): Buffer {
    if (!this.k) throw new Error("encryptAndHash before any mixKey: IK always mixes a key first");
    const out = Buffer.alloc(plaintext.length + TAG_BYTES);
    seal(out, this.k, this.n++, this.h, plaintext);
    this.mixHash(out);
    return out;
  }

  decryptAndHash(ciphertext: Buffer, what: string): Buffer {
    if (!this.k) throw new Error("decryptAndHash before any mixKey: IK always mixes a key first");
    if (ciphertext.length < TAG_BYTES) throw new ProtocolError("short", `${what} shorter than its tag`);
    const out = Buffer.alloc(ciphertext.length - TAG_BYTES);
    if (!open(out, this.k, this.n, this.h, ciphertext)) {
      throw new ProtocolError("decrypt_failed", `${what} failed authentication`);
    }
    this.n++;
    this.mixHash(ciphertext);
    return out;
  }

  split(): [Buffer, Buffer] {
    const [k1, k2] = hkdf(this.ck, Buffer.alloc(0), 2) as [Buffer, Buffer];
    return [k1.subarray(0, 32), k2.subarray(0, 32)];
  }

  get handshakeHash(): Buffer {
    return this.h;
  }
}

/** Initiator side: writes message 1, reads message 2. */
export class IKInitiator {
  private readonly state: SymmetricState;
  private readonly ephemeral: KeyPair;

  constructor(
    private readonly localStatic: KeyPair,
    private readonly remoteStatic: Buffer,
    prologue: Buffer,
    ephemeral?: KeyPair,
  ) {
    this.state = new SymmetricState(prologue);
    this.state.mixHash(remoteStatic); // pre-message "<- s"
    this.ephemeral = ephemeral ?? generateKeyPair();
  }

  /** Returns "e, es, s, ss" followed by the encrypted payload. */
  writeMessage1(payload: Buffer): Buffer {
    const s = this.state;
    s.mixHash(this.ephemeral.publicKey);
    s.mixKey(dh(this.ephemeral.privateKey, this.remoteStatic));
    const encryptedStatic = s.encryptAndHash(this.localStatic.publicKey);
    s.mixKey(dh(this.localStatic.privateKey, this.remoteStatic));
    const encryptedPayload = s.encryptAndHash(payload);
    return Buffer.concat([this.ephemeral.publicKey, encryptedStatic, encryptedPayload]);
  }

  /** Consumes "e, ee, se" and the payload; returns the payload and the transport keys. */
  readMessage2(message: Buffer): { payload: Buffer; keys: TransportKeys } {
    if (message.length < RESPONSE_KEYS_BYTES + TAG_BYTES) {
      throw new ProtocolError("short", `handshake response body of ${message.length} bytes`);
    }
    const s = this.state;
    const remoteEphemeral = message.subarray(0, DH_BYTES);
    s.mixHash(remoteEphemeral);
    s.mixKey(dh(this.ephemeral.privateKey, remoteEphemeral));
    s.mixKey(dh(this.localStatic.privateKey, remoteEphemeral));
    const payload = s.decryptAndHash(message.subarray(DH_BYTES), "handshake response payload");
    const [sendKey, receiveKey] = s.split();
    return { payload, keys: { sendKey, receiveKey, handshakeHash: s.handshakeHash, remoteStatic: this.remoteStatic } };
  }
}

/** Responder side: reads message 1 (learning the initiator's static key), writes message 2. */
export class IKResponder {
  private readonly state: SymmetricState;
  private remoteEphemeral: Buffer | null = null;
  private remoteStatic: Buffer | null = null;

  constructor(
    private readonly localStatic: KeyPair,
    prologue: Buffer,
  ) {
    this.state = new SymmetricState(prologue);
    this.state.mixHash(localStatic.publicKey); // pre-message "<- s"
  }

  readMessage1(message: Buffer): { payload: Buffer; remoteStatic: Buffer } {
    if (message.length < INITIATION_KEYS_BYTES + TAG_BYTES) {
      throw new ProtocolError("short", `handshake initiation body of ${message.length} bytes`);
    }
    const s = this.state;
    const re = message.subarray(0, DH_BYTES);
    s.mixHash(re);
    s.mixKey(dh(this.localStatic.privateKey, re));
    const rs = s.decryptAndHash(message.subarray(DH_BYTES, INITIATION_KEYS_BYTES), "initiator static key");
    s.mixKey(dh(this.localStatic.privateKey, rs));
    const payload = s.decryptAndHash(message.subarray(INITIATION_KEYS_BYTES), "handshake initiation payload");
    this.remoteEphemeral = Buffer.from(re);
    this.remoteStatic = rs;
    return { payload, remoteStatic: rs };
  }

  writeMessage2(payload: Buffer, ephemeral: KeyPair = generateKeyPair()): { message: Buffer; keys: TransportKeys } {
    if (!this.remoteEphemeral || !this.remoteStatic) throw new Error("writeMessage2 before readMessage1");
    const s = this.state;
    s.mixHash(ephemeral.publicKey);
    s.mixKey(dh(ephemeral.privateKey, this.remoteEphemeral));
    s.mixKey(dh(ephemeral.privateKey, this.remoteStatic));
    const encryptedPayload = s.encryptAndHash(payload);
    const [initiatorToResponder, responderToInitiator] = s.split();
    return {
      message: Buffer.concat([ephemeral.publicKey, encryptedPayload]),
      keys: {
        sendKey: responderToInitiator,
        receiveKey: initiatorToResponder,
        handshakeHash: s.handshakeHash,
        remoteStatic: this.remoteStatic,
      },
    };
  }
}

export function keyPairFromPrivate(privateKey: Buffer): KeyPair {
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}
