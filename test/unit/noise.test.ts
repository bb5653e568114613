import { test } from "node:test";
import assert from "node:assert/strict";
import { IKInitiator, IKResponder, keyPairFromPrivate } from "../../firmware/src/protocol/noise.js";
import { generateKeyPair, open, seal } from "../../firmware/src/protocol/crypto.js";
import { ProtocolError } from "../../firmware/src/protocol/errors.js";

// Known-answer vector for Noise_IK_25519_ChaChaPoly_BLAKE2b from the noise-c
// project's tests/vector/noise-c-basic.txt (prologue "Prologue123").
const hex = (s: string) => Buffer.from(s, "hex");
const vector = {
  prologue: hex("50726f6c6f677565313233"),
  initStatic: hex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"),
  initEphemeral: hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"),
  respStatic: hex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"),
  respEphemeral: hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"),
  payload1: hex("4c756477696720766f6e204d69736573"),
  message1: hex(
    "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944" +
      "ba83a447b38c83e327ad936929812f624884847b7831e95e197b2f797088efdd232fe541af156ec6d0657602902a8c3e" +
      "e64e470f4b6fcd9298ce0b56fe20f86e60d9d933ec6e103ffb09e6001d6abb64",
  ),
  payload2: hex("4d757272617920526f746862617264"),
  message2: hex(
    "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843" +
      "9f069b267a06b3de3ecb1043bcb09807c6cd101f3826192a65f11ef3fe4317",
  ),
  transport1Plain: hex("462e20412e20486179656b"),
  transport1Cipher: hex("cd54383060e7a28434cca27fb1cc524cfbabeb18181589df219d07"),
  transport2Plain: hex("4361726c204d656e676572"),
  transport2Cipher: hex("a856d3bf0246bfc476c655009cd1ed677b8dcc5b349ae8ef2a05f2"),
  handshakeHash: hex(
    "00e51d2aac81a9b8ebe441d6af3e1c8efc0f030cc608332edcb42588ff6a0ce2" +
      "6415ddc106e95277a5e6d54132f1e5245976b89caf96d262f1fe5a7f0c55c078",
  ),
};

test("noise IK matches the noise-c known-answer vector", () => {
  const initStatic = keyPairFromPrivate(vector.initStatic);
  const respStatic = keyPairFromPrivate(vector.respStatic);
  const initiator = new IKInitiator(initStatic, respStatic.publicKey, vector.prologue, keyPairFromPrivate(vector.initEphemeral));
  const message1 = initiator.writeMessage1(vector.payload1);
  assert.equal(message1.toString("hex"), vector.message1.toString("hex"));

  const responder = new IKResponder(respStatic, vector.prologue);
  const read1 = responder.readMessage1(message1);
  assert.deepEqual(read1.payload, vector.payload1);
  assert.deepEqual(read1.remoteStatic, initStatic.publicKey);

  const { message: message2, keys: respKeys } = responder.writeMessage2(vector.payload2, keyPairFromPrivate(vector.respEphemeral));
  assert.equal(message2.toString("hex"), vector.message2.toString("hex"));

  const { payload, keys: initKeys } = initiator.readMessage2(message2);
  assert.deepEqual(payload, vector.payload2);
  assert.equal(initKeys.handshakeHash.toString("hex"), vector.handshakeHash.toString("hex"));
  assert.equal(respKeys.handshakeHash.toString("hex"), vector.handshakeHash.toString("hex"));

  const c1 = Buffer.alloc(vector.transport1Plain.length + 16);
  seal(c1, initKeys.sendKey, 0n, null, vector.transport1Plain);
  assert.equal(c1.toString("hex"), vector.transport1Cipher.toString("hex"));
  const c2 = Buffer.alloc(vector.transport2Plain.length + 16);
  seal(c2, respKeys.sendKey, 0n, null, vector.transport2Plain);
  assert.equal(c2.toString("hex"), vector.transport2Cipher.toString("hex"));

  const p2 = Buffer.alloc(vector.transport2Plain.length);
  assert.equal(open(p2, initKeys.receiveKey, 0n, null, c2), true);
  assert.deepEqual(p2, vector.transport2Plain);
});

test("noise IK rejects an initiation for another responder", () => {
  const prologue = Buffer.from("test");
  const initiator = new IKInitiator(generateKeyPair(), generateKeyPair().publicKey, prologue);
  const message1 = initiator.writeMessage1(Buffer.from("hello"));
  const responder = new IKResponder(generateKeyPair(), prologue);
  assert.throws(() => responder.readMessage1(message1), (e: unknown) => e instanceof ProtocolError && e.reason === "decrypt_failed");
});

test("noise IK rejects a tampered response", () => {
  const prologue = Buffer.from("test");
  const resp = generateKeyPair();
  const initiator = new IKInitiator(generateKeyPair(), resp.publicKey, prologue);
  const responder = new IKResponder(resp, prologue);
  responder.readMessage1(initiator.writeMessage1(Buffer.alloc(0)));
  const { message } = responder.writeMessage2(Buffer.from("ok"));
  message[message.length - 1]! ^= 1;
  assert.throws(() => initiator.readMessage2(message), (e: unknown) => e instanceof ProtocolError && e.reason === "decrypt_failed");
});

test("noise IK rejects truncated messages", () => {
  const prologue = Buffer.from("test");
  const resp = generateKeyPair();
  const initiator = new IKInitiator(generateKeyPair(), resp.publicKey, prologue);
  const message1 = initiator.writeMessage1(Buffer.alloc(0));
  for (const n of [0, 1, 31, 32, 79, 95]) {
    const responder = new IKResponder(resp, prologue);
    assert.throws(() => responder.readMessage1(message1.subarray(0, n)), ProtocolError, `length ${n}`);
  }
  assert.throws(() => initiator.readMessage2(Buffer.alloc(40)), ProtocolError);
});
