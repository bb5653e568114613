import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  peekResponseReceiver,
  respond,
} from "../../firmware/src/protocol/handshake.js";
import { decodeInitiation, decodeResponse, decodeTransport, mac1Key } from "../../firmware/src/protocol/messages.js";
import { ProtocolError } from "../../firmware/src/protocol/errors.js";
import { INITIATION_MIN_BYTES, RESPONSE_MIN_BYTES, TRANSPORT_OVERHEAD_BYTES } from "../../firmware/src/protocol/constants.js";

function pair(now = 1_000) {
  const a = generateKeyPair();
  const b = generateKeyPair();
  const pending = createInitiation(a, b.publicKey, 0x1111, 5n, Buffer.from("route 7"));
  const received = consumeInitiation(b, mac1Key(b.publicKey), pending.datagram);
  const { datagram, session: responder } = respond(received, 0x2222, Buffer.from("ok"), now);
  const frame = peekResponseReceiver(datagram, mac1Key(a.publicKey));
  const { data, session: initiator } = consumeResponse(pending, frame, now);
  return { a, b, pending, received, initiator, responder, responseData: data, frame, responseDatagram: datagram };
}

test("layout sizes match the documented offsets", () => {
  assert.equal(INITIATION_MIN_BYTES, 128);
  assert.equal(RESPONSE_MIN_BYTES, 76);
  assert.equal(TRANSPORT_OVERHEAD_BYTES, 32);
});

test("handshake delivers identities, indexes and data", () => {
  const p = pair();
  assert.deepEqual(p.received.remoteStatic, p.a.publicKey);
  assert.equal(p.received.remoteIndex, 0x1111);
  assert.equal(p.received.timestampMs, 5n);
  assert.equal(p.received.data.toString(), "route 7");
  assert.equal(p.frame.receiverIndex, 0x1111);
  assert.equal(p.responseData.toString(), "ok");
  assert.equal(p.initiator.remoteIndex, 0x2222);
  assert.equal(p.responder.remoteIndex, 0x1111);
});

test("transport messages decrypt once, both directions", () => {
  const p = pair();
  const d1 = p.initiator.encrypt(Buffer.from("hello"), 1);
  assert.equal(d1.length, 5 + TRANSPORT_OVERHEAD_BYTES);
  assert.equal(p.responder.decrypt(decodeTransport(d1), 2).toString(), "hello");
  assert.throws(() => p.responder.decrypt(decodeTransport(d1), 3), (e: unknown) => e instanceof ProtocolError && e.reason === "replay");
  const d2 = p.responder.encrypt(Buffer.from("back"), 4);
  assert.equal(p.initiator.decrypt(decodeTransport(d2), 5).toString(), "back");
});

test("transport rejects tampering and the wrong session", () => {
  const p = pair();
  const q = pair();
  const d = p.initiator.encrypt(Buffer.from("secret"), 1);
  assert.throws(() => q.responder.decrypt(decodeTransport(d), 2), (e: unknown) => e instanceof ProtocolError && e.reason === "decrypt_failed");
  for (const offset of [4, 8, 15, 16, d.length - 1]) {
    const t = Buffer.from(d);
    t[offset]! ^= 0x80;
    assert.throws(() => p.responder.decrypt(decodeTransport(t), 2), ProtocolError, `flip at ${offset}`);
  }
  // A forged counter must not advance the window: the genuine message still decrypts.
  assert.equal(p.responder.decrypt(decodeTransport(d), 3).toString(), "secret");
});

test("session expires and asks for a rekey", () => {
  const p = pair(0);
  assert.equal(p.initiator.needsRekey(119_999), false);
  assert.equal(p.initiator.needsRekey(120_000), true);
  assert.equal(p.responder.needsRekey(120_000), false, "only the initiator rekeys by time");
  const d = p.initiator.encrypt(Buffer.from("late"), 0);
  assert.throws(() => p.responder.decrypt(decodeTransport(d), 180_000), (e: unknown) => e instanceof ProtocolError && e.reason === "expired_session");
});

test("initiation for another key fails mac1 before any DH", () => {
  const p = pair();
  const other = generateKeyPair();
  assert.throws(() => consumeInitiation(other, mac1Key(other.publicKey), p.pending.datagram), (e: unknown) => e instanceof ProtocolError && e.reason === "bad_mac");
});

test("decoders reject truncated, oversized and random datagrams", () => {
  const p = pair();
  const key = mac1Key(p.b.publicKey);
  for (let n = 0; n < p.pending.datagram.length; n++) {
    assert.throws(() => decodeInitiation(p.pending.datagram.subarray(0, n), key), ProtocolError, `initiation cut at ${n}`);
  }
  for (let n = 0; n < p.responseDatagram.length; n++) {
    assert.throws(() => decodeResponse(p.responseDatagram.subarray(0, n), mac1Key(p.a.publicKey)), ProtocolError);
  }
  assert.throws(() => decodeInitiation(Buffer.concat([p.pending.datagram, Buffer.alloc(600)]), key), (e: unknown) => e instanceof ProtocolError && e.reason === "oversized");
  for (let n = 0; n < 32; n++) assert.throws(() => decodeTransport(Buffer.alloc(n, 4)), ProtocolError);
  const reserved = Buffer.from(p.pending.datagram);
  reserved[2] = 1;
  assert.throws(() => decodeInitiation(reserved, key), (e: unknown) => e instanceof ProtocolError && e.reason === "bad_reserved");

  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
  for (let i = 0; i < 5000; i++) {
    const buf = Buffer.alloc(rand() % 300);
    for (let j = 0; j < buf.length; j++) buf[j] = rand() & 0xff;
    if (buf.length > 3) buf[0] = 1 + (rand() % 2);
    if (buf.length > 3) buf.fill(0, 1, 4);
    assert.throws(() => consumeInitiation(p.b, key, buf), ProtocolError);
    assert.throws(() => decodeResponse(buf, key), ProtocolError);
  }
});
