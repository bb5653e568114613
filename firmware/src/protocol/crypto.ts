// Cryptographic primitives of the protocol, on libsodium (sodium-native):
// X25519 (RFC 7748), ChaCha20-Poly1305 IETF (RFC 8439), BLAKE2b (RFC 7693).
// ChaCha20-Poly1305 is chosen over AES-GCM because the Raspberry Pi 4's
// Cortex-A72 has no AES instructions.
import sodium from "sodium-native";
import { ProtocolError } from "./errors.js";

export const KEY_BYTES = 32;
export const DH_BYTES = 32;
export const TAG_BYTES = 16;
export const NONCE_BYTES = 12;
export const HASH_BYTES = 64; // BLAKE2b-512, HASHLEN of the Noise spec
export const HASH_BLOCK_BYTES = 128; // BLAKE2b block, BLOCKLEN for HMAC
export const MAC_BYTES = 16;

export interface KeyPair {
  publicKey: Buffer;
  privateKey: Buffer;
}

export function generateKeyPair(): KeyPair {
  const privateKey = Buffer.alloc(KEY_BYTES);
  sodium.randombytes_buf(privateKey);
  return { publicKey: publicKeyOf(privateKey), privateKey };
}

export function publicKeyOf(privateKey: Buffer): Buffer {
  const publicKey = Buffer.alloc(KEY_BYTES);
  sodium.crypto_scalarmult_base(publicKey, privateKey);
  return publicKey;
}

/**
 * X25519. Throws ProtocolError("bad_key") for a low-order public key, whose
 * shared secret is all zero (RFC 7748 section 6.1): such a key is an attack or
 * garbage, never a peer.
 */
export function dh(privateKey: Buffer, publicKey: Buffer): Buffer {
  const out = Buffer.alloc(DH_BYTES);
  try {
    // libsodium itself rejects low-order points with an exception.
    sodium.crypto_scalarmult(out, privateKey, publicKey);
  } catch {
    throw new ProtocolError("bad_key", "X25519 with a low-order public key");
  }
  if (sodium.sodium_is_zero(out, out.length)) throw new ProtocolError("bad_key", "X25519 produced the all-zero value");
  return out;
}

/** True for a 32-byte X25519 public key that is not of low order. */
export function isUsablePublicKey(publicKey: Buffer): boolean {
  if (publicKey.length !== KEY_BYTES) return false;
  try {
    dh(generateKeyPair().privateKey, publicKey);
    return true;
  } catch {
    return false;
  }
}

export function randomBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  sodium.randombytes_buf(b);
  return b;
}

/** Nonce layout of the Noise ChaChaPoly functions: 4 zero bytes, then a 64-bit little-endian counter. */
export function writeNonce(nonce: Buffer, counter: bigint): void {
  nonce.writeUInt32LE(0, 0);
  nonce.writeBigUInt64LE(counter, 4);
}

export function seal(out: Buffer, key: Buffer, counter: bigint, ad: Buffer | null, plaintext: Buffer): number {
  const nonce = Buffer.allocUnsafe(NONCE_BYTES);
  writeNonce(nonce, counter);
  return sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, plaintext, ad, null, nonce, key);
}

/** Returns false on an authentication failure; out must hold ciphertext.length - TAG_BYTES bytes. */
export function open(out: Buffer, key: Buffer, counter: bigint, ad: Buffer | null, ciphertext: Buffer): boolean {
  if (ciphertext.length < TAG_BYTES) return false;
  const nonce = Buffer.allocUnsafe(NONCE_BYTES);
  writeNonce(nonce, counter);
  try {
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, ciphertext, ad, nonce, key);
    return true;
  } catch {
    return false;
  }
}

export function hash(...parts: Buffer[]): Buffer {
  const out = Buffer.alloc(HASH_BYTES);
  const state = Buffer.alloc(sodium.crypto_generichash_STATEBYTES);
  sodium.crypto_generichash_init(state, null, HASH_BYTES);
  for (const p of parts) sodium.crypto_generichash_update(state, p);
  sodium.crypto_generichash_final(state, out);
  return out;
}

/** Keyed BLAKE2b with a 16-byte output: the mac1 field of handshake messages. */
export function mac(key: Buffer, data: Buffer): Buffer {
  const out = Buffer.alloc(MAC_BYTES);
  sodium.crypto_generichash(out, data, key);
  return out;
}

/** HMAC (RFC 2104) over BLAKE2b, as the Noise spec defines HMAC-HASH. */
export function hmac(key: Buffer, ...data: Buffer[]): Buffer {
  const block = Buffer.alloc(HASH_BLOCK_BYTES);
  (key.length > HASH_BLOCK_BYTES ? hash(key) : key).copy(block);
  const ipad = Buffer.alloc(HASH_BLOCK_BYTES);
  const opad = Buffer.alloc(HASH_BLOCK_BYTES);
  for (let i = 0; i < HASH_BLOCK_BYTES; i++) {
    ipad[i] = block[i]! ^ 0x36;
    opad[i] = block[i]! ^ 0x5c;
  }
  return hash(opad, hash(ipad, ...data));
}

/** HKDF of the Noise spec (section 4.3), returning two or three HASHLEN outputs. */
export function hkdf(chainingKey: Buffer, ikm: Buffer, outputs: 2 | 3): Buffer[] {
  const tempKey = hmac(chainingKey, ikm);
  const out1 = hmac(tempKey, Buffer.from([1]));
  const out2 = hmac(tempKey, out1, Buffer.from([2]));
  if (outputs === 2) return [out1, out2];
  return [out1, out2, hmac(tempKey, out2, Buffer.from([3]))];
}

export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && sodium.sodium_memcmp(a, b);
}
