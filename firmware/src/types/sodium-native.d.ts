// The subset of sodium-native 5 that this project calls. The published
// @types/sodium-native describes version 2 and lacks the IETF AEAD and the
// streaming BLAKE2b functions, so the signatures are declared here.
declare module "sodium-native" {
  const sodium: {
    crypto_generichash_STATEBYTES: number;
    sodium_malloc(size: number): Buffer;
    sodium_memzero(buf: Buffer): void;
    sodium_is_zero(buf: Buffer, len: number): boolean;
    sodium_memcmp(a: Buffer, b: Buffer): boolean;
    randombytes_buf(buf: Buffer): void;
    crypto_scalarmult_base(q: Buffer, n: Buffer): void;
    crypto_scalarmult(q: Buffer, n: Buffer, p: Buffer): void;
    crypto_aead_chacha20poly1305_ietf_encrypt(
      c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer,
    ): number;
    crypto_aead_chacha20poly1305_ietf_decrypt(
      m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer,
    ): number;
    crypto_generichash(out: Buffer, input: Buffer, key?: Buffer): void;
    crypto_generichash_init(state: Buffer, key: Buffer | null, outlen: number): void;
    crypto_generichash_update(state: Buffer, input: Buffer): void;
    crypto_generichash_final(state: Buffer, out: Buffer): void;
  };
  export default sodium;
}
